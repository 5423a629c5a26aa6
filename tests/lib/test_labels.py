"""labels: label files and synset_words.txt."""
import pytest

from googlenet_chainer import errors, labels


def test_synset_words_is_caffes_list():
    names = labels.read_labels(labels.SYNSET_WORDS)
    assert len(names) == 1000
    assert names[0] == 'n01440764 tench, Tinca tinca'
    assert names[281] == 'n02123045 tabby, tabby cat'
    wnids = [line.split()[0] for line in names]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000


def test_label_files_with_duplicate_empty_or_control_names_are_refused(
        tmp_path):
    names = tmp_path / 'names.txt'

    def error(text):
        names.write_text(text)
        with pytest.raises(errors.UserError) as e:
            labels.read_labels(str(names))
        return str(e.value)
    assert error('a\na\nc\n') == ('label file {}: a is on lines 1 and 2; '
                                  'class names must differ'.format(names))
    assert error('a\n b\nc\nb\t\n') == (
        'label file {}: b is on lines 2 and 4; class names must differ'
        .format(names))
    assert error('a\n  \nc\n') == ('label file {} line 2 is empty: each '
                                   'line names the class of its number; '
                                   'name the class'.format(names))
    assert error('a\nb\tc\n') == ('label file {} line 2: b\\tc has a '
                                  'control character (\\t)'.format(names))
    # A form feed is no line end here (str.splitlines would split there).
    assert error('a\nb\x0cc\nd\n') == (
        'label file {} line 2: b\\x0cc has a control character (\\x0c)'
        .format(names))
    names.write_text('a\nb\n\n \n')  # blank lines after the last name
    assert labels.read_labels(str(names)) == ['a', 'b']


def test_a_label_file_may_rename_classes_but_not_reorder_them(tmp_path):
    names = tmp_path / 'names.txt'
    stored = ['cat', 'checks', 'stripes']

    def classes(text, stored=stored, n=3):
        names.write_text(text)
        return labels.model_class_names(n, str(names), stored)
    assert classes('chat\ncarreaux\nrayures\n') == [
        'chat', 'carreaux', 'rayures']
    assert classes('cat\ncarreaux\nstripes\n') == [
        'cat', 'carreaux', 'stripes']
    with pytest.raises(errors.UserError) as e:
        classes('stripes\nchecks\ncat\n')
    assert str(e.value) == (
        '{} lists stripes as class 0, but it is the model\'s class 2 (the '
        'names stored with the model; class 0 is cat): every prediction '
        'would be printed under another class\'s name; list the classes in '
        'the model\'s order, or leave --labels out'.format(names))
    # One moved name is enough; accents are compared composed, and case
    # counts only where the model's own names differ by it alone.
    with pytest.raises(errors.UserError, match='lists cat as class 2'):
        classes('chat\ncarreaux\ncat\n')
    with pytest.raises(errors.UserError, match='lists Checks as class 0'):
        classes('Checks\nCat\nStripes\n')
    assert classes('B\nA\nc\n', ['a', 'A', 'b']) == ['B', 'A', 'c']
    with pytest.raises(errors.UserError, match='class 1'):
        classes('x\ny\ncafe\u0301\n', ['a', 'caf\u00e9', 'b'])
    # Without stored names, 1000 classes are synset_words.txt's, by wnid.
    synsets = labels.read_labels(labels.SYNSET_WORDS)
    swapped = [synsets[1].split()[0]] + [s.split()[0] for s in synsets[1:]]
    swapped[1] = synsets[0].split()[0]
    with pytest.raises(errors.UserError, match="synset_words.txt's"):
        classes('\n'.join(swapped) + '\n', None, 1000)
    in_order = '\n'.join(s.split()[0] for s in synsets) + '\n'
    assert classes(in_order, None, 1000)[0] == 'n01440764'
