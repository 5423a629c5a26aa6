"""The sample photo's probabilities under the suite's synthetic weights, kept
to show that prediction gives the same on every numpy.

    python tools/reference_probabilities.py write     # under numpy 1.26
    python tools/reference_probabilities.py compare   # under any other

``write`` runs googlenet_predict.py (--json --top 1000, with and without
--oversample) on sample_images/cat.png with the model_1000 fixture's
weights (tests/caffe_fixtures.py, seed 0) and keeps the probabilities, with
the numpy, Python and CPU they were made on, in
tests/reference_probabilities.json; the suite compares every run against it
(tests/cli/test_predict.py, within tests/numeric.py's PROB_RTOL and
PROB_ATOL). ``compare`` prints how far this interpreter's numpy is from it.
"""
import datetime
import json
import os
import platform
import sys
import tempfile

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

import caffe_fixtures  # noqa: E402
from helpers import CROPS, REFERENCE, photo_probabilities  # noqa: E402


def cpu_name():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or 'unknown'


def probabilities():
    """{crops: the 1000 probabilities} on this interpreter's numpy."""
    with tempfile.TemporaryDirectory() as tmp:
        model = caffe_fixtures.converted_model(tmp, 1000)
        return {crops: photo_probabilities(model, *options)
                for crops, options in CROPS.items()}


def write():
    made = {crops: [float('%.9g' % p) for p in probs]
            for crops, probs in probabilities().items()}
    made.update(numpy=numpy.__version__, python=platform.python_version(),
                cpu=cpu_name(), date=datetime.date.today().isoformat())
    with open(REFERENCE, 'w') as f:
        json.dump(made, f, indent=0, sort_keys=True)
        f.write('\n')
    print('wrote {} (numpy {})'.format(REFERENCE, numpy.__version__))


def compare():
    with open(REFERENCE) as f:
        reference = json.load(f)
    print('numpy {} (Python {}, {}) against the reference of numpy {} '
          '(Python {}, {}, {}):'.format(
              numpy.__version__, platform.python_version(), cpu_name(),
              reference['numpy'], reference['python'], reference['cpu'],
              reference['date']))
    for crops, probs in probabilities().items():
        expected = numpy.array(reference[crops])
        big = expected > 1e-4
        print('  {:10s} max |difference| {:.1e}, max relative difference '
              '{:.1e} (of the {} probabilities over 1e-4), top-5 the same: '
              '{}'.format(crops, numpy.abs(probs - expected).max(),
                          (numpy.abs(probs - expected) / expected)[big].max(),
                          big.sum(), list(numpy.argsort(-probs)[:5]) ==
                          list(numpy.argsort(-expected)[:5])))


if __name__ == '__main__':
    {'write': write, 'compare': compare}[sys.argv[1]]()
