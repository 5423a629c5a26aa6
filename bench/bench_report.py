"""The report files of the 1000-class model on 1000 images: their time and
peak memory.

    .venv/bin/python bench/bench_report.py [ROUNDS]

What evaluate_googlenet.py --out does once the images are scored:
reports.evaluation_report, format_evaluation and
report_files.write_report_files (report.json, report.txt, the two confusion
figures, predictions.csv, report.html with 48 thumbnails). The scores are
drawn, not computed: 1000 ImageNet-sized JPEGs (500x375), one per class in
wnid folders, and probabilities over synset_words.txt's 1000 classes that
put about two thirds of the images right, as BVLC GoogLeNet's top-1 does
(the report's cost depends on the classes and images, not the network). Each
round runs in a fresh process (its peak RSS is its own, Python and
matplotlib included); the time is the round's scoring and writing, its
imports left out. Prints each round, the median time and the largest peak.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT]

IMAGES = 1000


def write_images(folder, wnids):
    """One 500x375 JPEG per class, in wnid folders; [(path, label)]."""
    rng = numpy.random.RandomState(0)
    pairs = []
    for label, wnid in enumerate(wnids[:IMAGES]):
        os.makedirs(os.path.join(folder, wnid))
        path = os.path.join(folder, wnid, '0.JPEG')
        noise = rng.randint(0, 256, (375 // 25, 500 // 25, 3)).astype(
            numpy.uint8)
        Image.fromarray(noise).resize((500, 375), Image.BICUBIC).save(
            path, quality=90)
        pairs.append((path, label))
    return pairs


def probabilities(n_classes, labels):
    """float32 softmax rows with about two thirds of the images right."""
    rng = numpy.random.RandomState(1)
    logits = rng.standard_normal((len(labels), n_classes)) * 2
    right = rng.rand(len(labels)) < 0.7
    logits[numpy.arange(len(labels)), labels] += numpy.where(right, 10, 0)
    probs = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(numpy.float32)


def child(folder, out):
    """One round: scores the images' drawn probabilities and writes the
    report files to out; prints the seconds it took, as JSON."""
    from googlenet_chainer import labels, report_files, reports
    names = labels.read_labels(labels.SYNSET_WORDS)
    with open(os.path.join(folder, 'pairs.json')) as f:
        pairs = [tuple(pair) for pair in json.load(f)]
    probs = probabilities(len(names), [label for _, label in pairs])
    start = time.perf_counter()
    report = reports.evaluation_report(probs, pairs, names)
    report.update(model='googlenet.model', data=folder, unreadable=[])
    text = reports.format_evaluation(report)
    report_files.write_report_files(
        out, report, text,
        report_files.Scored(probs, pairs, names, 10 ** 8), 'test')
    print(json.dumps({'seconds': time.perf_counter() - start,
                      'top1': report['top1'],
                      # KiB on Linux: the process's peak, imports included.
                      'peak_mb': resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    from googlenet_chainer import labels
    wnids = labels.matching_names(labels.read_labels(labels.SYNSET_WORDS))
    with tempfile.TemporaryDirectory() as folder:
        pairs = write_images(os.path.join(folder, 'val'), wnids)
        with open(os.path.join(folder, 'pairs.json'), 'w') as f:
            json.dump(pairs, f)
        seconds, peaks = [], []
        for i in range(rounds):
            out = os.path.join(folder, 'out{}'.format(i))
            os.mkdir(out)
            done = subprocess.run(
                [sys.executable, __file__, '--child', folder, out],
                check=True, capture_output=True, text=True)
            result = json.loads(done.stdout)
            peaks.append(result['peak_mb'])
            seconds.append(result['seconds'])
            sizes = {name: os.path.getsize(os.path.join(out, name))
                     for name in sorted(os.listdir(out))}
            print('round {}: {:.2f} s, peak RSS {:.0f} MB (top-1 {:.2f}); '
                  'files: {}'.format(
                      i + 1, seconds[-1], peaks[-1], result['top1'],
                      ', '.join('{} {:.0f} kB'.format(name, size / 1000)
                                for name, size in sizes.items())))
    print('report files of the 1000-class model on {} images: median {:.2f} '
          's, peak RSS {:.0f} MB (targets: seconds, under 1024 MB)'.format(
              IMAGES, statistics.median(seconds), max(peaks)))


if __name__ == '__main__':
    if sys.argv[1:2] == ['--child']:
        child(*sys.argv[2:4])
    else:
        main()
