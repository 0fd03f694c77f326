import numpy as np

from autocompress.search.emd import emd_distance


def test_emd_matches_the_shift_of_a_distribution():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(10000).astype(np.float32)
    assert emd_distance([[a]], [[a]]) == 0.0
    assert abs(emd_distance([[a]], [[a + 0.5]]) - 0.5) < 1e-6
    assert emd_distance([[a]], [[a * 1.1]]) > 0.0
