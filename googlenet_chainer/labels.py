"""Class names: label files, ImageNet's synset_words.txt, a model's names."""
import os
import re

from googlenet_chainer.console import LINE_BREAK, controls_in, shown
from googlenet_chainer.errors import UserError

# ILSVRC-2012's 1000 classes, ``wnid words`` in class order, at the
# repository's top beside the scripts.
SYNSET_WORDS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    'synset_words.txt')


def one_per_line(names, what, path):
    """The text of a one-name-per-line file (labels.txt, a list of inputs);
    a name with a line break is a UserError rather than two lines that
    shift every later name for the file's readers."""
    for name in names:
        if LINE_BREAK.search(name):
            raise UserError('{} {} has a line break: {} holds one name per '
                            'line'.format(what, shown(name), shown(path)))
    return ''.join(name + '\n' for name in names)


def read_text_lines(path, what):
    """The lines of a UTF-8 text file (a byte-order mark and CRLF line ends
    are fine); an unreadable file or another encoding is a UserError."""
    try:
        with open(path, encoding='utf-8-sig') as f:
            # Lines end at line ends only (the universal newlines of text
            # mode: \n, \r\n, \r), not also at the form feeds, \x1c-\x1e,
            # NEL and U+2028 where str.splitlines would split a name in two.
            lines = f.read().split('\n')
    except UnicodeDecodeError as e:
        raise UserError('{} {} is not UTF-8 text (byte 0x{:02x} at offset '
                        '{}): save it as UTF-8'.format(
                            what, shown(path), e.object[e.start], e.start))
    except OSError as e:
        raise UserError('cannot read {} {}: {}'.format(
            what, shown(path), e.strerror or e))
    if lines[-1] == '':  # the last line's end
        lines.pop()
    return lines


def read_labels(path):
    """One label per line (Caffe's synset_words.txt format), surrounding
    whitespace stripped; blank lines after the last are fine. An empty name
    before it, a name given twice or one with a control character is a
    UserError: each would shift, merge or garble the labels."""
    names = [line.strip() for line in read_text_lines(path, 'label file')]
    while names and not names[-1]:
        names.pop()
    lines = {}
    for number, name in enumerate(names, 1):
        where = 'label file {} line {}'.format(shown(path), number)
        if not name:
            raise UserError('{} is empty: each line names the class of its '
                            'number; name the class'.format(where))
        if controls_in(name):
            raise UserError('{}: {} has a control character ({})'.format(
                where, shown(name), controls_in(name)))
        if name in lines:
            raise UserError('label file {}: {} is on lines {} and {}; '
                            'class names must differ'.format(
                                shown(path), shown(name), lines[name],
                                number))
        lines[name] = number
    return names


def model_class_names(n_classes, label_file=None, stored=None):
    """Names for a model's classes: a label file, the names the training
    run stored with the model, or synset_words.txt for ImageNet's 1000."""
    if label_file:
        labels = read_labels(label_file)
        if len(labels) != n_classes:
            raise UserError('{} has {} labels but the model has {} classes'
                            .format(label_file, len(labels), n_classes))
        return labels
    if stored is not None:
        return stored
    if n_classes == 1000:
        return read_labels(SYNSET_WORDS)
    return ['class {}'.format(i) for i in range(n_classes)]


def matching_names(class_names):
    """The names class folders are matched against: ImageNet's wnids when
    the names are synset_words.txt lines (``n01440764 tench, ...``), so a
    1000-class model matches ILSVRC's folders; otherwise the names."""
    wnids = [name.split(None, 1)[0] for name in class_names]
    if all(re.fullmatch(r'n\d{8}', wnid) for wnid in wnids) and (
            len(set(wnids)) == len(wnids)):
        return wnids
    return list(class_names)
