"""``dlst-convert-stylegan2``: conversion output, key lists on failure, clear errors, no overwrite."""
import argparse

import torch
from helpers import REPO, run
from test_checkpoints import TINY_D, TINY_G, randomised, rosinality_discriminator_state, rosinality_generator_state

from dlst_plugin.archs.stylegan2_discriminator_arch import PureStyleGAN2Discriminator
from dlst_plugin.archs.stylegan2_generator_arch import PureStyleGAN2Generator
from dlst_plugin.cli.convert_stylegan2 import main
from dlst_plugin.loading.priors import load_into


def test_converts_rosinality_generator_and_discriminator(tmp_path, capsys):
    g, d = randomised(PureStyleGAN2Generator(**TINY_G), 0), randomised(PureStyleGAN2Discriminator(**TINY_D), 1)
    torch.save({'g_ema': rosinality_generator_state(g), 'd': rosinality_discriminator_state(d),
                'latent_avg': torch.zeros(16), 'args': argparse.Namespace(size=16)}, tmp_path / 'ros.pt')
    assert main([str(tmp_path / 'ros.pt'), str(tmp_path / 'out.pth')]) == 0
    printed = capsys.readouterr().out
    assert 'generator: rosinality layout' in printed and 'input.input -> constant_input.weight' in printed
    assert 'out_size=16, num_style_feat=16, num_mlp=2' in printed
    written = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert set(written) == {'params_ema', 'params_d', 'latent_avg'}
    for key, value in g.state_dict().items():
        assert torch.equal(written['params_ema'][key], value), key
    d2 = PureStyleGAN2Discriminator(**TINY_D)
    assert load_into(d2, tmp_path / 'out.pth') == 'basicsr'  # params_d picked for a discriminator
    assert torch.equal(d2.final_conv[0].weight, d.final_conv[0].weight)


def test_lone_discriminator_is_written_as_params(tmp_path):
    torch.save({'d': rosinality_discriminator_state(PureStyleGAN2Discriminator(**TINY_D))}, tmp_path / 'd.pt')
    assert main([str(tmp_path / 'd.pt'), str(tmp_path / 'out.pth')]) == 0
    assert set(torch.load(tmp_path / 'out.pth', weights_only=True)) == {'params'}


def test_mismatch_stops_with_key_lists(tmp_path, capsys):
    state = PureStyleGAN2Generator(**TINY_G).state_dict()
    del state['noises.noise2']
    state['to_rgbs.0.bias'] = torch.zeros(1, 4, 1, 1)
    torch.save({'params_ema': state}, tmp_path / 'g.pth')
    assert main([str(tmp_path / 'g.pth'), str(tmp_path / 'out.pth')]) == 1
    err = capsys.readouterr().err
    assert 'missing keys (1): noises.noise2' in err
    assert 'to_rgbs.0.bias (1, 4, 1, 1) vs (1, 3, 1, 1)' in err
    assert not (tmp_path / 'out.pth').exists()


def test_text_file_gives_one_error_line(tmp_path, capsys):
    (tmp_path / 'notes.pth').write_text('these are notes, not weights\n')
    assert main([str(tmp_path / 'notes.pth'), str(tmp_path / 'out.pth')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'notes.pth is not a PyTorch checkpoint' in err
    assert len(err.strip().splitlines()) == 1


def test_truncated_file_gives_one_error_line_from_the_command(tmp_path):
    torch.save({'params_ema': PureStyleGAN2Generator(**TINY_G).state_dict()}, tmp_path / 'full.pth')
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'full.pth').read_bytes()[:3000])
    proc = run(['python', '-m', 'dlst_plugin.cli.convert_stylegan2', tmp_path / 'cut.pth', tmp_path / 'out.pth'],
               cwd=REPO, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'cut.pth' in lines[0], proc.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_existing_destination_needs_overwrite(tmp_path, capsys):
    torch.save({'params_ema': PureStyleGAN2Generator(**TINY_G).state_dict()}, tmp_path / 'g.pth')
    (tmp_path / 'out.pth').write_bytes(b'keep me')
    assert main(['-i', str(tmp_path / 'g.pth'), '-o', str(tmp_path / 'out.pth')]) == 2  # usage: nothing done
    assert '--overwrite' in capsys.readouterr().err
    assert (tmp_path / 'out.pth').read_bytes() == b'keep me'
    assert main(['-i', str(tmp_path / 'g.pth'), '-o', str(tmp_path / 'out.pth'), '--overwrite']) == 0
    assert set(torch.load(tmp_path / 'out.pth', weights_only=True)) == {'params_ema'}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['g.pth', 'out.pth']  # no temporary file left
    assert main([str(tmp_path / 'g.pth'), str(tmp_path / 'out.pth'), '--force']) == 0  # the old spelling


def test_missing_source_is_a_usage_error(tmp_path, capsys):
    assert main(['-i', str(tmp_path / 'nope.pth'), '-o', str(tmp_path / 'out.pth')]) == 2
    assert capsys.readouterr().err.startswith('error: -i/--input') and not (tmp_path / 'out.pth').exists()
