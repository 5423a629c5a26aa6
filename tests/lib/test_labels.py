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
