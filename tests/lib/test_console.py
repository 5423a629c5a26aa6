"""console: names made printable."""
import io
import os
import sys

from googlenet_chainer import cli, console


def test_shown_escapes_controls_and_backslashes_one_way():
    shown = console.shown
    assert shown('a\nb\rc\td\x1b[31m\x07\x7f') == (
        'a\\nb\\rc\\td\\x1b[31m\\x07\\x7f')
    undecodable = os.fsdecode(b'caf\xe9 \x85')
    assert shown(undecodable) == 'caf\\xe9 \\x85'
    # A literal backslash sequence, a C1 control and U+2028 differ from it.
    assert shown('caf\\xe9') == 'caf\\\\xe9'
    assert shown('\x85\u2028') == '\\u0085\\u2028'
    assert shown('plain caf\xe9') == 'plain caf\xe9'


def test_long_class_lists_are_cut_in_messages():
    names = ['n{:02}'.format(i) for i in range(12)]
    assert console.first_names(names) == ', '.join(names[:10]) + \
        ', and 2 more'
    assert console.first_names(names[:3]) == 'n00, n01, n02'


def test_a_script_escapes_what_the_terminal_cannot_print(monkeypatch):
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding='ascii', errors='strict')
    monkeypatch.setattr(sys, 'stdout', strict)
    assert cli.report_errors(print, '\u732b caf\xe9') == 0
    strict.flush()
    assert raw.getvalue() == b'\\u732b caf\\xe9\n'
