"""What every dlst-* command shares (dlst_plugin.cli.common): --version, the exit codes in --help, old
spellings of flags, and one mapping of errors to exit codes without tracebacks."""
import argparse
import importlib
import os
import signal
import time

import pytest
from helpers import REPO, run

import dlst_plugin
from dlst_plugin.cli import common
from dlst_plugin.errors import ConfigError, InputError, Interrupted, Terminated, TerminationRequest, interruption

COMMANDS = ['convert_stylegan2', 'make_lmdb', 'collect_lq_faces', 'make_testset', 'generate_pairs', 'restore',
            'evaluate', 'export', 'table1']


def main_of(name):
    return importlib.import_module(f'dlst_plugin.cli.{name}').main


@pytest.mark.parametrize('name', COMMANDS)
def test_version(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_of(name)(['--version'])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f'dlst-plugin {dlst_plugin.__version__}'


@pytest.mark.parametrize('name', COMMANDS)
def test_help_states_the_exit_codes(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_of(name)(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert 'exit codes:' in out and '--version' in out
    for line in ('0    done', '1    some inputs failed', '2    usage or configuration error', '130  interrupted',
                 '143  stopped by SIGTERM (cluster preemption): what was finished is kept'):
        assert line in out


@pytest.mark.parametrize('name', COMMANDS)
def test_unknown_flag_is_exit_2(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_of(name)(['--no-such-flag'])
    assert exit_info.value.code == 2
    assert 'Traceback' not in capsys.readouterr().err


def test_usage_error_of_a_console_command_is_exit_2_without_traceback(tmp_path):
    proc = run(['python', '-m', 'dlst_plugin.cli.make_lmdb', '-i', tmp_path / 'missing', '-o', tmp_path / 'x.lmdb'],
               cwd=REPO, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f'error: -i/--input {tmp_path / "missing"}: source folder does not '
                                                'exist']


def _parser():
    parser = common.make_parser('dlst-x', 'test command')
    parser.add_argument('-i', '--input')
    common.add_positional_alias(parser, 'input', 'SRC', '-i/--input')
    return parser


def test_positional_alias_fills_the_flag_and_may_not_repeat_it(capsys):
    assert common.parse_args(_parser(), ['a']).input == 'a'
    assert common.parse_args(_parser(), ['-i', 'b']).input == 'b'
    for argv in (['a', '-i', 'b'], []):
        with pytest.raises(SystemExit) as exit_info:
            common.parse_args(_parser(), argv)
        assert exit_info.value.code == 2
    assert '-i/--input' in capsys.readouterr().err


@pytest.mark.parametrize('raised, code, line', [
    (ConfigError('--x 3: must be 1 or 2'), 2, 'error: --x 3: must be 1 or 2'),
    (InputError('a.png: not an image'), 1, 'error: a.png: not an image'),
    (PermissionError(13, 'Permission denied', 'out/a.png'), 1, "error: [Errno 13] Permission denied: 'out/a.png'"),
    (KeyboardInterrupt(), 130, 'interrupted: what was kept'),
    (Interrupted('12 pairs kept in OUT'), 130, 'interrupted: 12 pairs kept in OUT'),
    (TerminationRequest('SIGTERM'), 143, 'stopped by SIGTERM: what was kept'),
    (Terminated('12 pairs kept in OUT'), 143, 'stopped by SIGTERM: 12 pairs kept in OUT'),
])
def test_run_command_maps_errors_to_exit_codes(raised, code, line, capsys):
    def failing(args):
        raise raised
    assert common.run_command(_parser(), failing, ['a'], interrupted='what was kept') == code
    assert capsys.readouterr().err.strip() == line


def test_run_command_returns_the_commands_code():
    assert common.run_command(_parser(), lambda args: None, ['a']) == 0
    assert common.run_command(_parser(), lambda args: 1, ['a']) == 1


def test_sigterm_stops_a_command_as_ctrl_c_does_with_exit_143(capsys):
    """A real SIGTERM in this process: the command's finally blocks run (a second SIGTERM during them is
    ignored), one line says what was kept, exit 143, and the handler before the command is back."""
    cleaned = []

    def work(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # not reached: the handler raises first
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # Slurm may send it again: the cleanup must go on
            cleaned.append('committed')
    before = signal.getsignal(signal.SIGTERM)
    assert common.run_command(_parser(), work, ['a'], interrupted='what was finished is kept') == 143
    assert cleaned == ['committed'] and signal.getsignal(signal.SIGTERM) is before
    assert capsys.readouterr().err.strip() == 'stopped by SIGTERM: what was finished is kept'


@pytest.mark.parametrize('raised, error', [(KeyboardInterrupt(), Interrupted), (TerminationRequest(), Terminated)])
def test_interruption_says_which_signal_stopped_the_work(raised, error):
    made = interruption(raised, '3 pairs kept')
    assert type(made) is error and str(made) == '3 pairs kept'


def test_help_hides_empty_defaults():
    parser = common.make_parser('dlst-x', 'test command')
    parser.add_argument('--a', default=None, help='A')
    parser.add_argument('--b', default=0, help='B')
    text = parser.format_help()
    assert 'A\n' in text and '(default: None)' not in text and '(default: 0)' in text
    assert isinstance(parser, argparse.ArgumentParser)


@pytest.mark.parametrize('raised, code, line', [
    (ConfigError('train.x: must be 1'), 2, 'error: train.x: must be 1'),
    (OSError(28, 'No space left on device'), 1, 'error: [Errno 28] No space left on device'),
    (KeyboardInterrupt(), 130, 'interrupted: the last saved checkpoint is kept; rerun with --auto_resume'),
])
def test_training_pipeline_errors_map_to_the_same_exit_codes(raised, code, line, tmp_path, monkeypatch, capsys):
    from basicsr import train as basicsr_train

    from dlst_plugin import train
    (tmp_path / 'o.yml').write_text('name: x\n')

    def failing(root_path):
        raise raised
    monkeypatch.setattr(basicsr_train, 'train_pipeline', failing)
    monkeypatch.setattr('sys.argv', ['dlst-train'])
    with pytest.raises(SystemExit) as exit_info:
        train.main(['-opt', str(tmp_path / 'o.yml')])
    assert exit_info.value.code == code
    assert capsys.readouterr().err.strip().startswith(line)
