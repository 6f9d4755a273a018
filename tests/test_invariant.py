"""If every student outputs exactly its chunk, every ensemble must rebuild the teacher's logits exactly."""
import pytest
import torch
from torch import nn

from tadist_utils import models, plans


class Oracle(nn.Module):
    """A 'perfect student': returns exactly its slice of its parent's output."""

    def __init__(self, parent, start, stop):
        super().__init__()
        self.parent, self.start, self.stop = parent, start, stop
        self.feature_dim = stop - start

    def features(self, x):
        return self.parent.features(x)[:, self.start:self.stop]


def oracles(plan, teacher):
    made = {plans.TEACHER: teacher}
    for n in plan.nodes:
        made[n.name] = Oracle(made[n.parent], n.start, n.stop)
    return made


@pytest.mark.parametrize("experiment", plans.EXPERIMENTS)
def test_perfect_students_reproduce_teacher_logits(experiment):
    torch.manual_seed(0)
    teacher = models.teacher().eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = teacher(x)
        made = oracles(plans.METHODS[experiment].plan(), teacher)
        for size, names in plans.METHODS[experiment].plan().ensembles.items():
            ens = models.Ensemble([made[n] for n in names], init_from=teacher.classifier).eval()
            torch.testing.assert_close(ens(x), expected, rtol=0, atol=1e-5)


def test_dense_guides_agree_for_perfect_students():
    """A perfect student's chunk of every ancestor is the same numbers: the dense targets are consistent."""
    torch.manual_seed(0)
    teacher = models.teacher().eval()
    x = torch.randn(4, 3, 32, 32)
    plan = plans.METHODS["dense"].plan()
    made = oracles(plan, teacher)
    with torch.no_grad():
        for n in plan.nodes:
            mine = made[n.name].features(x)
            for ancestor, a, b in n.targets:
                torch.testing.assert_close(made[ancestor].features(x)[:, a:b], mine, rtol=0, atol=0)


def test_students_in_the_wrong_order_do_not():
    torch.manual_seed(0)
    teacher = models.teacher().eval()
    x = torch.randn(4, 3, 32, 32)
    made = oracles(plans.METHODS["direct"].plan(), teacher)
    with torch.no_grad():
        ens = models.Ensemble([made["S2"], made["S01"]], init_from=teacher.classifier).eval()
        assert not torch.allclose(ens(x), teacher(x), atol=1e-3)
