"""GoogLeNet's forward pass: this project against OpenCV's dnn and onnxruntime.

    .venv/bin/python bench/bench_versus.py [ROUNDS]

All three run the same synthetic weights: OpenCV 4.14's dnn module reads this
project's Caffe export of the converted model (``export_googlenet.py --caffe``:
deploy.prototxt and a caffemodel), onnxruntime its ONNX export
(``export_googlenet.py --model M --onnx OUT.onnx``). In one process, the
three alternate within each round at batch 1, 8 and 32; the median of the
rounds (at least five) is reported as images/s, with the ratios and a GEMM
probe (numpy's sgemm on 1024x1024 matrices) that tracks the host's speed.

Then, each side in fresh processes: the wall time to classify one image (and
for the project, the time until its first forward pass starts, against
``python -c "import numpy"``); the end-to-end throughput on a folder of 64
photo-sized (3000x2000) JPEGs, OpenCV doing imread, resize and forward; the
project's peak memory at batch 32.

OpenCV is for the benchmark only: ``pip install
opencv-python-headless==4.14.0.94`` (OpenCV 5 has no Caffe importer). See
bench/README.md.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

import caffe_fixtures  # noqa: E402
from googlenet_chainer.caffemodel import convert  # noqa: E402
from googlenet_chainer.export import export_caffe  # noqa: E402
from googlenet_chainer.images import CENTER, CROP, MEAN_BGR, RESIZE  # noqa: E402,E501
from googlenet_chainer.labels import model_class_names  # noqa: E402
from googlenet_chainer.model_file import load_model  # noqa: E402

BATCHES = (1, 8, 32)
TARGET = 1.25
MEMORY_LIMIT_MB = 270
PHOTOS = 64
PHOTO_SIZE = (3000, 2000)
FOLDER_BATCH = 8


def export_onnx(model_path, onnx_path):
    """The project's ONNX export through its command line; None, or why not."""
    script = os.path.join(ROOT, 'export_googlenet.py')
    if not os.path.exists(script):
        return 'export_googlenet.py is not in this checkout'
    done = subprocess.run([sys.executable, script, '--model', model_path,
                           '--onnx', onnx_path], capture_output=True,
                          text=True)
    if done.returncode:
        return 'export_googlenet.py failed: {}'.format(
            (done.stderr.strip().splitlines() or ['?'])[-1])
    return None


def gemm_gflops(size=1024, repeat=3):
    """numpy's float32 GEMM on size x size matrices, GFLOP/s (best of
    repeat): the host's speed at this moment."""
    a = numpy.ones((size, size), numpy.float32)
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def sides(tmp):
    """{name: forward(x) -> probabilities} of every side that runs here,
    and {name: why not} of the others; writes the shared files to tmp."""
    weights = caffe_fixtures.random_weights(0)
    paths = {name: os.path.join(tmp, name) for name in (
        'source.caffemodel', 'googlenet.model', 'googlenet.onnx')}
    caffe_fixtures.write_caffemodel(paths['source.caffemodel'], weights, 'v2')
    convert(paths['source.caffemodel'], paths['googlenet.model'],
            log=lambda line: None)
    model, _ = load_model(paths['googlenet.model'])
    # The deploy net and caffemodel OpenCV reads: the project's own export.
    prototxt, caffemodel, _ = export_caffe(
        model, os.path.join(tmp, 'caffe'), model_class_names(1000))
    paths.update({'deploy.prototxt': prototxt,
                  'googlenet.caffemodel': caffemodel})
    runs, missing = {'project': model.predict}, {}
    try:
        import cv2
        net = cv2.dnn.readNetFromCaffe(paths['deploy.prototxt'],
                                       paths['googlenet.caffemodel'])

        def opencv(x):
            net.setInput(x)
            return net.forward()
        runs['opencv'] = opencv
    except ImportError:
        missing['opencv'] = 'cv2 is not installed (see bench/README.md)'
    why = export_onnx(paths['googlenet.model'], paths['googlenet.onnx'])
    if why:
        missing['onnxruntime'] = why
    else:
        import onnxruntime
        session = onnxruntime.InferenceSession(
            paths['googlenet.onnx'], providers=['CPUExecutionProvider'])
        runs['onnxruntime'] = lambda x: session.run(None, {'data': x})[0]
    return runs, missing, paths


def throughput(runs, rounds, rng):
    """{batch: {side: median images/s}}, {batch: {side: max relative
    difference of its probabilities from the project's}}, GEMM probes."""
    rates, differences, probes = {}, {}, []
    for batch in BATCHES:
        x = rng.uniform(-120, 130, (batch, 3, 224, 224)).astype(
            numpy.float32)
        reference = runs['project'](x)
        differences[batch] = {
            side: float((numpy.abs(run(x) - reference) / reference).max())
            for side, run in runs.items()}
        repeat = max(1, 16 // batch)
        samples = {side: [] for side in runs}
        for _ in range(rounds):
            probes.append(gemm_gflops())
            for side, run in runs.items():
                start = time.perf_counter()
                for _ in range(repeat):
                    run(x)
                samples[side].append(repeat * batch /
                                     (time.perf_counter() - start))
        rates[batch] = {side: statistics.median(s)
                        for side, s in samples.items()}
    return rates, differences, probes


FIRST_FORWARD = """
import sys, time
start = float(sys.argv[1])
import tuned_googlenet
predict = tuned_googlenet.GoogLeNet.predict
def timed(self, x):
    print('first forward after', time.time() - start, file=sys.stderr)
    return predict(self, x)
tuned_googlenet.GoogLeNet.predict = timed
import googlenet_predict
sys.exit(googlenet_predict.script(sys.argv[2:]))
"""

OPENCV_FOLDER = """
import os, sys
import cv2, numpy
prototxt, caffemodel, folder, batch = sys.argv[1:5]
net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
mean = numpy.array({mean}, numpy.float32)
names = sorted(os.listdir(folder)) if os.path.isdir(folder) else [folder]
paths = [os.path.join(folder, n) if os.path.isdir(folder) else n
         for n in names]
for begin in range(0, len(paths), int(batch)):
    blobs = []
    for path in paths[begin:begin + int(batch)]:
        image = cv2.resize(cv2.imread(path), ({resize}, {resize}))
        crop = image[{c}:{c} + {crop}, {c}:{c} + {crop}]
        blobs.append((crop.astype(numpy.float32) - mean).transpose(2, 0, 1))
    net.setInput(numpy.ascontiguousarray(blobs))
    prob = net.forward()
    for path, p in zip(paths[begin:], prob):
        print(path, int(p.argmax()))
""".format(mean=MEAN_BGR.tolist(), resize=RESIZE, c=CENTER, crop=CROP)


def wall(command, env=None):
    """(seconds, stderr) of a fresh process, exit status checked."""
    start = time.time()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env=env)
    seconds = time.time() - start
    if done.returncode:
        raise SystemExit('{} failed: {}'.format(command[:3], done.stderr))
    return seconds, done.stderr


def fresh_processes(paths, image, folder, rounds, with_opencv):
    """Medians over alternating rounds of fresh-process wall times."""
    py = sys.executable
    times = {'import numpy': [], 'project: first forward': [],
             'project: one image': []}
    if with_opencv:
        times['opencv: one image'] = []
    for _ in range(rounds):
        times['import numpy'].append(wall([py, '-c', 'import numpy'])[0])
        start = time.time()
        done = subprocess.run(
            [py, '-c', FIRST_FORWARD, repr(start), '--model',
             paths['googlenet.model'], '--top', '1', image],
            capture_output=True, text=True, cwd=ROOT, check=True)
        times['project: one image'].append(time.time() - start)
        times['project: first forward'].append(float(
            done.stderr.split('first forward after')[1].split()[0]))
        if with_opencv:
            times['opencv: one image'].append(wall(
                [py, '-c', OPENCV_FOLDER, paths['deploy.prototxt'],
                 paths['googlenet.caffemodel'], image, '1'])[0])
    folder_rates = {'project': [], 'opencv': []} if with_opencv else {
        'project': []}
    for _ in range(max(1, rounds // 2)):
        folder_rates['project'].append(PHOTOS / wall(
            [py, 'googlenet_predict.py', '--model', paths['googlenet.model'],
             '--top', '1', '-b', str(FOLDER_BATCH), folder])[0])
        if with_opencv:
            folder_rates['opencv'].append(PHOTOS / wall(
                [py, '-c', OPENCV_FOLDER, paths['deploy.prototxt'],
                 paths['googlenet.caffemodel'], folder,
                 str(FOLDER_BATCH)])[0])
    return ({k: statistics.median(v) for k, v in times.items()},
            {k: statistics.median(v) for k, v in folder_rates.items()})


MEMORY_PROBE = """
import sys
import numpy
from googlenet_chainer.model_file import load_model
model, _ = load_model(sys.argv[1])
x = numpy.random.RandomState(0).uniform(-120, 130, (32, 3, 224, 224))
model.predict(x.astype(numpy.float32))
with open('/proc/self/status') as f:
    print([line.split()[1] for line in f if line.startswith('VmHWM:')][0])
"""


def write_photos(folder, rng):
    """PHOTOS smooth 3000x2000 JPEGs (about 1 MB each, like a camera's)."""
    os.makedirs(folder)
    w, h = PHOTO_SIZE
    yy, xx = numpy.mgrid[0:h, 0:w].astype(numpy.float32)
    for i in range(PHOTOS):
        phase = rng.uniform(0, 6.3, 3)
        rgb = [127 + 100 * numpy.sin(xx / (150 + 40 * c) + yy / 230 + p)
               for c, p in enumerate(phase)]
        array = numpy.stack(rgb, axis=2) + rng.normal(0, 6, (h, w, 1))
        Image.fromarray(array.clip(0, 255).astype(numpy.uint8)).save(
            os.path.join(folder, 'photo{:02d}.jpg'.format(i)), quality=90)


def main():
    rounds = max(5, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    rng = numpy.random.RandomState(0)
    # Other processes on the host slow every side, and not equally: the
    # load says how far from a quiet machine the figures are.
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs, missing, paths = sides(tmp)
        rates, differences, probes = throughput(runs, rounds, rng)
        print('forward pass, images/s, median of {} alternating rounds '
              '(GEMM probe: {:.0f}-{:.0f} GFLOP/s, median {:.0f}; CPU: {}; '
              'load average {:.2f} at the start, {:.2f} now)'
              .format(rounds, min(probes), max(probes),
                      statistics.median(probes), cpu_name(), load,
                      os.getloadavg()[0]))
        others = [side for side in runs if side != 'project']
        print('batch ' + ''.join('{:>13s}'.format(s) for s in runs) +
              ''.join('{:>16s}'.format('x ' + s) for s in others))
        for batch in BATCHES:
            r = rates[batch]
            print('{:5d} '.format(batch) +
                  ''.join('{:13.1f}'.format(r[s]) for s in runs) +
                  ''.join('{:15.2f}x'.format(r['project'] / r[s])
                          for s in others))
        for side in others:
            worst = min(rates[b]['project'] / rates[b][side]
                        for b in BATCHES)
            print('target >= {}x {} at every batch: {}'.format(
                TARGET, side, 'met' if worst >= TARGET else 'NOT MET'))
        for side, why in missing.items():
            print('{}: not measured ({})'.format(side, why))
        print('probabilities, max relative difference from the project\'s: ' +
              ', '.join('{} {:.1e}'.format(side, max(
                  differences[b][side] for b in BATCHES)) for side in others))

        folder = os.path.join(tmp, 'photos')
        write_photos(folder, rng)
        image = os.path.join(folder, 'photo00.jpg')
        times, folder_rates = fresh_processes(
            paths, image, folder, rounds, 'opencv' in runs)
        print('fresh process, seconds (median of {}):'.format(rounds))
        for name, seconds in times.items():
            print('  {:24s} {:6.2f}'.format(name, seconds))
        ratio = times['project: first forward'] / times['import numpy']
        print('  project start-up before its first forward pass: {:.1f}x '
              '`python -c "import numpy"`'.format(ratio))
        print('folder of {} {}x{} JPEGs, batch {}, images/s including '
              'start-up: '.format(PHOTOS, *PHOTO_SIZE, FOLDER_BATCH) +
              ', '.join('{} {:.1f}'.format(k, v)
                        for k, v in folder_rates.items()))
        if 'opencv' in folder_rates:
            ratio = folder_rates['project'] / folder_rates['opencv']
            print('  project / opencv: {:.2f}x (target >= 1.0x: {})'.format(
                ratio, 'met' if ratio >= 1.0 else 'NOT MET'))
        peak = int(subprocess.run(
            [sys.executable, '-c', MEMORY_PROBE, paths['googlenet.model']],
            capture_output=True, text=True, check=True, cwd=ROOT).stdout)
        print('project, batch 32: peak RSS {:.0f} MB (limit {}: {})'.format(
            peak / 1024, MEMORY_LIMIT_MB,
            'met' if peak / 1024 <= MEMORY_LIMIT_MB else 'NOT MET'))
        print('load average at the end: {:.2f}'.format(os.getloadavg()[0]))


def cpu_name():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return 'unknown'


if __name__ == '__main__':
    main()
