"""export and caffe_layers: the deploy net as BVLC's."""
import os

import pytest
from google.protobuf import text_format

import caffe_pb2
import export_googlenet
import tuned_googlenet
from googlenet_chainer import caffe_layers, model_file


def chain_link(model, caffe_name):
    link = model
    for part in caffe_layers.LAYER_MAP[caffe_name].split('/'):
        link = getattr(link, part)
    return link


def test_deploy_prototxt_matches_the_chain(model_1000, tmp_path):
    model, _ = model_file.load_model(model_1000)
    folder = str(tmp_path / 'caffe')
    export_googlenet.export_caffe(model, folder, ['x'] * 1000)
    with open(os.path.join(folder, 'deploy.prototxt')) as f:
        net = text_format.Parse(f.read(), caffe_pb2.NetParameter())
    layers = list(net.layer)
    assert not any(len(layer.blobs) for layer in layers)
    assert (layers[0].type, list(layers[0].top)) == ('Input', ['data'])
    assert list(layers[0].input_param.shape[0].dim)[1:] == [3, 224, 224]
    assert (layers[-1].name, layers[-1].type, list(layers[-1].bottom)) == (
        'prob', 'Softmax', ['loss3/classifier'])
    # The deploy net has no auxiliary heads; every other weighted layer of
    # the converter's map is here, once.
    weighted = [layer.name for layer in layers
                if layer.type in ('Convolution', 'InnerProduct')]
    assert sorted(weighted) == sorted(
        name for name in caffe_layers.LAYER_MAP
        if not name.startswith(('loss1', 'loss2')))
    stages = list(tuned_googlenet.INCEPTION)
    consumer_width = {stage: tuned_googlenet.INCEPTION[following][0]
                      for stage, following in zip(stages, stages[1:])}
    consumer_width['inc5b'] = model.loss3_fc.W.shape[1]
    tops = {'data'}
    for layer in layers[1:]:
        assert set(layer.bottom) <= tops, layer.name
        tops |= set(layer.top)
        if layer.type == 'Convolution':
            link = chain_link(model, layer.name)
            p = layer.convolution_param
            out, _, kh, kw = link.W.shape
            assert p.num_output == out and list(p.kernel_size) == [kh]
            assert (list(p.stride) or [1]) == [link.stride[0]]
            assert (list(p.pad) or [0]) == [link.pad[0]]
        elif layer.type == 'InnerProduct':
            assert layer.inner_product_param.num_output == \
                chain_link(model, layer.name).W.shape[0]
        elif layer.type in ('ReLU', 'Dropout'):
            assert list(layer.bottom) == list(layer.top)  # in place
        elif layer.type == 'LRN':
            p = layer.lrn_param
            # Caffe's alpha; Chainer's is alpha / local_size (tuned_googlenet).
            assert (p.local_size, p.beta, p.k) == (5, 0.75, 1.0)
            assert p.alpha == pytest.approx(1e-4)
        elif layer.type == 'Concat':
            stage = 'inc' + layer.name[len('inception_'):].split('/')[0]
            assert layer.concat_param.axis == 1
            branches = [b.split('/')[1] for b in layer.bottom]
            assert branches == ['1x1', '3x3', '5x5', 'pool_proj']
            widths = [chain_link(model, b).W.shape[0] for b in layer.bottom]
            assert sum(widths) == consumer_width[stage]
        elif layer.type == 'Pooling':
            p = layer.pooling_param
            assert (p.kernel_size, p.stride, p.pad) in (
                (3, 2, 0), (3, 1, 1), (7, 1, 0)), layer.name
            assert (p.pool == p.AVE) == (layer.name == 'pool5/7x7_s1')
    concats = [layer for layer in layers if layer.type == 'Concat']
    assert len(concats) == len(tuned_googlenet.INCEPTION)
    assert layers[-2].bottom[0] == 'pool5/7x7_s1'
