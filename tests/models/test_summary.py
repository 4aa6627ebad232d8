"""The summary table: FLOPs counted on the traced code match the recorded per-preset values; every preset listed."""

import pytest

from rcn_jax.models import create_model, summary


@pytest.mark.parametrize("preset,fm,mflops", [
    ("rcn_a", 16, 15.2), ("rcn_a", 64, 152), ("rcn_s", 16, 18.8), ("rcn_s", 64, 210),
    ("rcn_w", 16, 4.2), ("rcn_w", 64, 63.7), ("rcn_c", 16, 6.1), ("rcn_f", 64, 93.1),
    ("rcn_p", 16, 8.9), ("rcn_p", 64, 104)])
def test_flops_match_the_spec(preset, fm, mflops):
  _, flops = summary.parameters_and_flops(create_model(preset, features=fm, pool_size=5))
  assert flops / 1e6 == pytest.approx(mflops, rel=0.01)


def test_table_lists_every_preset_and_setting():
  rows = summary.summary_rows(features=(16,), pool_sizes=(5, 7))
  assert len(rows) == 2 * 11
  table = summary.format_table(rows, 60)
  assert "| rcn_f | RCN-F | 16 | 5 | 4,339 | 6.1 |" in table
