"""Builds synset_words.txt (Caffe's ILSVRC-2012 class list) from a timm wheel.

    pip download --no-deps --only-binary=:all: timm==1.0.31 -d /tmp/timm
    python tools/make_synset_words.py /tmp/timm/timm-1.0.31-py3-none-any.whl

timm's imagenet_synsets.txt lists the 1000 wnids in class-index order (sorted
by wnid, as Caffe's file is), and imagenet_synset_to_lemma.txt gives each
one's words; joined with a space they are Caffe's synset_words.txt lines.
"""
import sys
import zipfile

INFO = 'timm/data/_info/'


def main(wheel, out='synset_words.txt'):
    with zipfile.ZipFile(wheel) as z:
        wnids = z.read(INFO + 'imagenet_synsets.txt').decode().split()
        lemmas = dict(line.split('\t', 1) for line in z.read(
            INFO + 'imagenet_synset_to_lemma.txt').decode().splitlines())
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    with open(out, 'w') as f:
        for wnid in wnids:
            f.write('{} {}\n'.format(wnid, lemmas[wnid]))


if __name__ == '__main__':
    main(*sys.argv[1:])
