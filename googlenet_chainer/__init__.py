"""The library under the scripts.

The scripts at the repository's top are thin command lines over it:
``googlenet_predict.py``, ``convert_caffe_model.py``, ``train_googlenet.py``,
``evaluate_googlenet.py`` and ``export_googlenet.py``. Beside them stand
``tuned_googlenet.py``, the Chain (the file a user edits to change the
heads), and ``caffe_pb2.py``, Caffe's schema (generated from
``caffe.proto``): the library imports those two, and never a script.

What each module owns:

    errors        UserError and Unreachable: failures told in one line
    compat        Chainer 7.8.1 imported without its environment check
    console       names made printable, progress bars
    interrupts    the Ctrl-C policy
    fonts         the installed fonts that draw class names in any script
    locks         flock: one maker of a file, live writers told from dead
    files         atomic writes, output checks
    web           URLs without their secrets, a GET's failures in one line
    download      images into memory, the caffemodel to a file, resumably
    pixels        each pixel mode read as Caffe's reader (OpenCV) reads it
    images        decoding as Caffe does, refusals, preprocessing, listing
    labels        label files, synset_words.txt, a model's class names
    prefetch      decoding ahead on every core
    fast_ops      the trunk's numpy kernels for inference, over the cores
    losses        the classification loss, with label smoothing
    model_file    the model file: save, load, refuse
    devices       Chainer devices from the command line
    caffe_layers  BVLC's layer names and the deploy net as layers
    datasets      labelled data: class folders, list files, the split
    data_report   what a data set holds and what will not train well
    plots         matplotlib figures
    inputs        prediction's inputs: URLs, files, folders
    inference     the one inference path (Predictor, batching, decoding)
    reports       scores and their text
    page          report.html: a report as a self-contained page
    results       prediction's outputs: table, JSON, CSV, features,
                  probabilities
    caffemodel    reading a caffemodel into the Chain
    export        writing the deploy net for Caffe and ONNX
    report_files  the files a report is kept in, the page included
    model_store   BVLC's caffemodel and the converted model, fetched once
    cli           exit codes, argument types, the options scripts share
    mpi           one process or many under ChainerMN
    training/     what only train_googlenet.py uses (its own __init__)

The dependency rule: LAYERS lists the modules lowest first, and a module
imports only modules of the layers before its own (``tuned_googlenet`` is
one of them; ``caffe_pb2`` may be imported anywhere). This file imports
nothing, so that a script loads only the modules it uses;
tests/test_layout.py holds the code to the rule.
"""

LAYERS = (
    ('errors', 'compat', 'console', 'interrupts', 'fonts'),
    ('locks', 'pixels'),
    ('files',),
    ('web', 'images', 'labels', 'prefetch', 'fast_ops', 'losses'),
    ('download', 'tuned_googlenet'),
    ('model_file', 'devices', 'caffe_layers', 'datasets', 'data_report',
     'plots', 'inputs', 'inference'),
    ('reports', 'page', 'results', 'caffemodel', 'export'),
    ('report_files', 'model_store'),
    ('cli',),
    ('mpi',),
    ('training.sampling', 'training.row_cache', 'training.loader',
     'training.snapshots', 'training.optimizers'),
    ('training.views',),
    ('training.data', 'training.options'),
    ('training.feature_cache',),
    ('training.extensions', 'training.run_folder'),
    ('training.plan',),
    ('training.trainer', 'training.final_report'),
)
