"""The Makefile's choice of interpreter and its .venv, run against stand-in
interpreters (shell scripts that report a version, "create" a venv and log
pip's arguments), so that no real environment is built."""
import os
import shutil
import subprocess

import pytest
from packaging.requirements import Requirement

from helpers import ROOT

FAKE_PYTHON = r'''#!/bin/sh
case "$1" in
  -c) if [ "$2" = "import pip" ] && [ -e "$0.nopip" ]; then exit 1; fi
      echo {version} ;;
  -m) case "$2" in
        venv) if [ -n "$FAKE_VENV_FAIL" ]; then
                mkdir -p "$3"; echo "ensurepip is not available" >&2; exit 1
              fi
              mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
        pip) echo "{version} $*" >> "$FAKE_PIP_LOG"; [ -z "$FAKE_PIP_FAIL" ] ;;
        pytest) echo "tests ran on {version}" ;;
      esac ;;
esac
'''


# What the Makefile's recipes run besides the interpreter and sh's builtins.
TOOLS = ('cp', 'head', 'mkdir', 'rm', 'touch')


HINT = 'Python 3.10 to 3.14, e.g. PYTHON=python3.13 make test'


class Project:
    """A copy of the Makefile and requirements in a folder of its own, and a
    PATH holding only the stand-in interpreters and the tools above."""

    def __init__(self, root):
        self.dir = root / 'project'
        self.dir.mkdir()
        for name in ('Makefile', 'requirements.txt', 'requirements-dev.txt',
                     'requirements-build.txt', 'requirements-mpi.txt'):
            shutil.copy(os.path.join(ROOT, name), str(self.dir))
        self.bin = root / 'bin'
        self.bin.mkdir()
        for tool in TOOLS:
            os.symlink(shutil.which(tool), str(self.bin / tool))
        self.pip_log = root / 'pip.log'
        self.pip_log.write_text('')

    def python(self, name, version):
        path = self.bin / name
        path.write_text(FAKE_PYTHON.format(version=version))
        path.chmod(0o755)
        return str(path)

    def make(self, *args, **env):
        environ = {'PATH': str(self.bin), 'FAKE_PIP_LOG': str(self.pip_log),
                   'HOME': os.environ.get('HOME', '/')}
        environ.update(env)
        result = subprocess.run(
            [shutil.which('make'), '--no-print-directory'] + list(args),
            cwd=str(self.dir), env=environ, capture_output=True, text=True,
            timeout=60)
        return result.returncode, result.stdout, result.stderr

    def stamps(self):
        venv = self.dir / '.venv'
        return sorted(p.name for p in venv.glob('.installed*'))

    def pip_calls(self):
        return self.pip_log.read_text().splitlines()


@pytest.fixture
def project(tmp_path):
    return Project(tmp_path)


def assert_refused(code, out, err, *parts):
    assert code != 0
    assert out == ''
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert 'error: ' in lines[0]
    for part in parts:
        assert part in lines[0]


@pytest.mark.parametrize('version', ['3.9.18', '3.15.0', '2.7.18'])
def test_unsupported_python_refused_before_anything(project, version):
    python = project.python('python', version)
    code, out, err = project.make('test', 'PYTHON=' + python)
    assert_refused(code, out, err, 'is Python {}, which this project does '
                   'not support; use '.format(version) + HINT)
    assert not (project.dir / '.venv').exists()
    assert project.pip_calls() == []


def test_python_that_does_not_run_refused(project, tmp_path):
    missing = str(tmp_path / 'python3.11')
    code, out, err = project.make('predict', 'PYTHON=' + missing)
    assert_refused(code, out, err, 'PYTHON={} does not run ('.format(missing),
                   'not found', 'name an installed ' + HINT)
    assert not (project.dir / '.venv').exists()


def test_no_supported_python_on_path(project):
    """The refusal names the interpreters found and their versions, not
    those that are missing."""
    project.python('python3', '3.9.18')
    project.python('python', '2.7.18')
    code, out, err = project.make()
    assert_refused(code, out, err, 'error: no supported Python found '
                   '(python3 is 3.9.18, python is 2.7.18); install Python '
                   '3.10 to 3.14 and name it, e.g. PYTHON=python3.13 '
                   'make test')
    for missing in ('python3.12', 'python3.11', 'python3.10'):
        assert missing not in err
    assert not (project.dir / '.venv').exists()


def test_no_python_at_all(project):
    code, out, err = project.make()
    assert_refused(code, out, err, 'no supported Python found (none of '
                   'python3 python3.13 python3.12 python3.11 python3.10 '
                   'python runs)')


def test_python3_first_when_supported(project):
    """A current distribution's own python3 (Debian 13's is 3.13) is taken
    before any other candidate."""
    project.python('python3.12', '3.12.1')
    project.python('python3', '3.13.0')
    code, out, err = project.make('test')
    assert code == 0, err
    assert 'creating .venv with python3 (Python 3.13.0)' in out
    assert 'tests ran on 3.13.0' in out


def test_untested_python_accepted_and_said(project):
    project.python('python3', '3.14.0')
    code, out, err = project.make('test')
    assert code == 0, err
    assert ('creating .venv with python3 (Python 3.14.0, not tested with '
            'this project)') in out
    assert 'tests ran on 3.14.0' in out


def test_first_supported_candidate_builds_venv_once(project):
    project.python('python3.12', '3.12.1')
    project.python('python3', '3.9.18')
    code, out, err = project.make('test')
    assert code == 0, err
    assert 'creating .venv with python3.12 (Python 3.12.1)' in out
    assert 'tests ran on 3.12.1' in out
    assert project.stamps() == ['.installed-python3.12.1']
    build, dev = project.pip_calls()
    assert build.endswith('install -q -r requirements-build.txt')
    assert dev.endswith(
        'install -q --no-build-isolation -r requirements-dev.txt '
        '-r requirements-mpi.txt')

    code, out, err = project.make('test')
    assert code == 0, err
    assert 'creating' not in out and len(project.pip_calls()) == 2


def test_venv_rebuilt_when_python_changes_and_kept_without_python(project):
    project.python('python3.12', '3.12.1')
    python310 = project.python('python3.10', '3.10.13')
    assert project.make('test')[0] == 0

    code, out, err = project.make('test', 'PYTHON=' + python310)
    assert code == 0, err
    assert 'rebuilding .venv: it was not made by Python 3.10.13' in out
    assert 'tests ran on 3.10.13' in out
    assert project.stamps() == ['.installed-python3.10.13']

    # Without PYTHON, the supported interpreter .venv already has is kept
    # rather than rebuilding with the first candidate (python3.12 here).
    code, out, err = project.make('test')
    assert code == 0, err
    assert 'rebuilding' not in out and 'creating' not in out
    assert 'tests ran on 3.10.13' in out


def test_unsupported_python_leaves_existing_venv(project):
    project.python('python3.11', '3.11.7')
    python39 = project.python('python3.9', '3.9.18')
    assert project.make('test')[0] == 0
    code, out, err = project.make('test', 'PYTHON=' + python39)
    assert_refused(code, out, err, 'is Python 3.9.18')
    assert project.stamps() == ['.installed-python3.11.7']


def test_failed_install_leaves_no_stamp_and_is_redone(project):
    project.python('python3.11', '3.11.7')
    code, out, err = project.make('test', FAKE_PIP_FAIL='1')
    assert code != 0
    assert ('error: installing the requirements into .venv failed (above); '
            'run make again once the cause is fixed') in err
    assert 'tests ran' not in out
    assert project.stamps() == []

    code, out, err = project.make('test')
    assert code == 0, err
    assert 'creating' not in out
    assert project.stamps() == ['.installed-python3.11.7']


def test_changed_requirements_reinstall_into_same_venv(project):
    project.python('python3.11', '3.11.7')
    assert project.make('test')[0] == 0
    stamp = project.dir / '.venv' / '.installed-python3.11.7'
    later = stamp.stat().st_mtime + 10
    os.utime(str(project.dir / 'requirements.txt'), (later, later))
    code, out, err = project.make('test')
    assert code == 0, err
    assert 'creating' not in out and 'rebuilding' not in out
    assert len(project.pip_calls()) == 4


def test_venv_without_pip_rebuilt(project):
    project.python('python3.11', '3.11.7')
    assert project.make('test')[0] == 0
    # As a `python -m venv` killed before it installed pip leaves it.
    (project.dir / '.venv' / 'bin' / 'python.nopip').write_text('')
    (project.dir / '.venv' / '.installed-python3.11.7').unlink()
    code, out, err = project.make('test')
    assert code == 0, err
    assert 'rebuilding .venv: it has no pip' in out
    assert 'creating .venv with python3.11' in out
    assert project.stamps() == ['.installed-python3.11.7']


def test_failed_venv_creation_leaves_no_venv(project):
    project.python('python3.11', '3.11.7')
    code, out, err = project.make('test', FAKE_VENV_FAIL='1')
    assert code != 0
    assert 'error: python3.11 -m venv .venv failed (above)' in err
    assert not (project.dir / '.venv').exists()


def test_clean_works_whatever_python_says(project):
    (project.dir / '.venv').mkdir()
    code, out, err = project.make('clean', 'PYTHON=/nowhere/python')
    assert code == 0, err
    assert not (project.dir / '.venv').exists()


@pytest.mark.parametrize('version',
                         ['3.10', '3.11', '3.12', '3.13', '3.14'])
def test_requirements_pin_each_package_once_per_python(version):
    """Each supported Python gets exactly one pin of every package."""
    env = {'python_version': version, 'python_full_version': version + '.0'}
    pins = {}
    for name in ('requirements.txt', 'requirements-dev.txt',
                 'requirements-build.txt', 'requirements-mpi.txt'):
        with open(os.path.join(ROOT, name)) as f:
            for line in f:
                line = line.split('#')[0].strip()
                if not line or line.startswith('-r'):
                    continue
                req = Requirement(line)
                if req.marker is None or req.marker.evaluate(env):
                    assert str(req.specifier).startswith('=='), line
                    pins.setdefault(req.name.lower(), []).append(line)
    assert {name: len(lines) for name, lines in pins.items()
            if len(lines) != 1} == {}
    assert {'chainer', 'numpy', 'pillow', 'matplotlib', 'setuptools',
            'pytest', 'mpi4py', 'mpich'} <= set(pins)
