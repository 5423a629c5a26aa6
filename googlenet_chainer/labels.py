"""Class names: label files, ImageNet's synset_words.txt, a model's names."""
import os
import re

from googlenet_chainer.console import (LINE_BREAK, controls_in, same_name,
                                       shown)
from googlenet_chainer.errors import UserError

# ILSVRC-2012's 1000 classes, ``wnid words`` in class order, at the
# repository's top beside the scripts.
SYNSET_WORDS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    'synset_words.txt')


def one_per_line(names, what, path):
    """The text of a one-name-per-line file (labels.txt, a list of inputs).

    A name with a line break is refused rather than written as two lines
    that would shift every later name for the file's readers.

    Args:
        names: the names (str), in the file's order.
        what: what a name is, for the message ('class', 'input').
        path: the file the text is for, for the message.

    Returns:
        str: each name followed by a newline.

    Raises:
        UserError: a name holds a line break: any character at which
            str.splitlines ends a line (console.LINE_BREAK).
    """
    for name in names:
        if LINE_BREAK.search(name):
            raise UserError('{} {} has a line break: {} holds one name per '
                            'line'.format(what, shown(name), shown(path)))
    return ''.join(name + '\n' for name in names)


def read_text_lines(path, what):
    """The lines of a UTF-8 text file.

    A byte-order mark and CRLF or CR line ends are fine.

    Args:
        path: the file.
        what: what it is, for the messages ('label file', 'list file').

    Returns:
        [str]: its lines without their line ends; a line end at the end of
        the file makes no empty last line.

    Raises:
        UserError: the file cannot be read, or is not UTF-8 (the message
            gives the first bad byte and its offset).
    """
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
    """The class names of a label file, one per line in class order.

    Caffe's synset_words.txt format; blank lines after the last name are
    fine.

    Args:
        path: the label file, UTF-8 (read_text_lines).

    Returns:
        [str]: the names, surrounding whitespace stripped.

    Raises:
        UserError: the file cannot be read as UTF-8 text, or a line before
            the last name is empty, a name is given twice or one holds a
            control character: each would shift, merge or garble the
            labels. The message says where.
    """
    names = [same_name(line.strip())
             for line in read_text_lines(path, 'label file')]
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
    """Names for a model's classes, from the first source that applies.

    Args:
        n_classes: the model's number of classes.
        label_file: None, or a label file (--labels), which must name
            n_classes classes.
        stored: None, or the names the training run stored with the
            model (model_file.load_model's), taken as they are.

    Returns:
        [str]: the label file's names; else the stored ones; else, for
        1000 classes, ImageNet's synset_words.txt lines (``n01440764
        tench, Tinca tinca``); else ``class 0``, ``class 1``, ...

    Raises:
        UserError: the label file or synset_words.txt is refused by
            read_labels, the label file's count is not n_classes, or it
            lists one of the model's own classes (the stored names; for
            1000 classes without, synset_words.txt's) at another index
            (check_order).
    """
    if label_file:
        labels = read_labels(label_file)
        if len(labels) != n_classes:
            raise UserError('{} has {} labels but the model has {} classes'
                            .format(label_file, len(labels), n_classes))
        if stored is not None:
            check_order(labels, stored, label_file,
                        'the names stored with the model')
        elif n_classes == 1000:
            check_order(labels, read_labels(SYNSET_WORDS), label_file,
                        'synset_words.txt\'s')
        return labels
    if stored is not None:
        return stored
    if n_classes == 1000:
        return read_labels(SYNSET_WORDS)
    return ['class {}'.format(i) for i in range(n_classes)]


def check_order(labels, reference, label_file, origin):
    """Refuses names that are the model's own classes in another order.

    A label file may rename classes (other words, another language), but
    one that lists a class of the model at another index would print every
    prediction of that class under another's name. Names are compared as
    matching_names compares them (by wnid where both have them, else
    accents composed), and regardless of case unless the model has names
    that only case tells apart.

    Args:
        labels: the label file's names, one per class.
        reference: the model's own names, as many.
        label_file: the file, for the message.
        origin: where reference comes from, in words.

    Raises:
        UserError: naming the first such name, its index in the file and
            in the model, and origin.
    """
    keys, given = matching_names(reference), matching_names(labels)
    if len({key.casefold() for key in keys}) == len(keys):
        keys = [key.casefold() for key in keys]
        given = [key.casefold() for key in given]
    index = {key: i for i, key in enumerate(keys)}
    for i, key in enumerate(given):
        j = index.get(key, i)
        if j != i:
            raise UserError(
                '{} lists {} as class {}, but it is the model\'s class {} '
                '({}; class {} is {}): every prediction would be printed '
                'under another class\'s name; list the classes in the '
                'model\'s order, or leave --labels out'.format(
                    shown(label_file), shown(labels[i]), i, j, origin, i,
                    shown(reference[i])))


def matching_names(class_names):
    """The names class folders are matched against.

    Args:
        class_names: a model's class names (model_class_names).

    Returns:
        [str]: ImageNet's wnids when every name starts with a distinct one
        as synset_words.txt lines do (``n01440764 tench, ...``), so that a
        1000-class model matches ILSVRC's folders; otherwise the names,
        accents composed (console.same_name).
    """
    wnids = _wnids(class_names)
    return wnids if wnids is not None else [
        same_name(name) for name in class_names]


def _wnids(class_names):
    """Each name's wnid when every name starts with a distinct one, as
    synset_words.txt lines do; else None."""
    wnids = [(name.split(None, 1) or [''])[0] for name in class_names]
    if all(re.fullmatch(r'n\d{8}', wnid) for wnid in wnids) and (
            len(set(wnids)) == len(wnids)):
        return wnids
    return None


def class_fields(class_names):
    """Each class's id and name, as separate fields of the outputs.

    Args:
        class_names: a model's class names (model_class_names).

    Returns:
        [(class id, name)] in class order: for ImageNet's synset_words.txt
        lines (matching_names finds their wnids) the wnid and the words
        after it (``n01440764``, ``tench, Tinca tinca``); otherwise the
        class name as both, for it is the name of its class folder too.
    """
    wnids = _wnids(class_names)
    if wnids is None:
        return [(name, name) for name in class_names]
    return [(wnid, name[len(wnid):].strip() or wnid)
            for wnid, name in zip(wnids, class_names)]
