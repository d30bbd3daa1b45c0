"""StepControl's decision to step or skip (``train.max_loss``), in one process and across two DDP ranks."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import free_port

from dlst_plugin.models.step_control import StepControl
from dlst_plugin.options.blocks import StepOptions


def _one_step(loss_scale, max_loss=10.0):
    """A StepControl step of a one-weight network whose loss is ``loss_scale`` times its weight (1.0): returns
    whether it stepped and whether the weight moved."""
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 1, bias=False)
    net.weight.data.fill_(1.0)
    control = StepControl(StepOptions.decode({'max_loss': max_loss}, 'train'), torch.device('cpu'), names=('g', ))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    control.backward('g', net(torch.full((1, 1), float(loss_scale))).sum())
    stepped = control.step('g', optimizer, list(net.parameters()))
    return stepped, net.weight.item() != 1.0


def test_a_loss_above_max_loss_skips_the_step_and_one_below_takes_it():
    assert _one_step(1.0) == (True, True)
    assert _one_step(100.0) == (False, False)


def _rank(rank, port, results):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        results[rank] = torch.tensor(_one_step(100.0 if rank == 1 else 1.0))  # rank 1 only: above max_loss
    finally:
        dist.destroy_process_group()


def test_under_ddp_one_rank_above_max_loss_makes_every_rank_skip():
    """A finite loss above max_loss on one rank leaves the averaged gradients finite: without agreeing, the
    other rank would step alone and the replicas' weights would drift apart."""
    results = torch.ones(2, 2, dtype=torch.bool).share_memory_()  # per rank: (stepped, weight moved)
    mp.start_processes(_rank, args=(free_port(), results), nprocs=2, start_method='fork')  # fork: no re-import
    assert not results.any(), results
