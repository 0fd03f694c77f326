import numpy as np

from autocompress.data.batches import InputSpec, batch_axes, batch_one


def _spec(name, shape, dim_params=None, dtype=np.float32):
    return InputSpec(name, np.dtype(dtype), tuple(shape), tuple(dim_params or [""] * len(shape)))


def test_a_dynamic_axis_0_is_cut_and_a_static_state_and_a_scalar_are_fed_whole():
    specs = [_spec("x", [None, 4]), _spec("state", [2, 1, 3]), _spec("sr", [], dtype=np.int64)]
    feed = {"x": np.zeros((5, 4), np.float32), "state": np.ones((2, 1, 3), np.float32), "sr": np.array(16000)}
    one = batch_one(feed, specs)
    assert one["x"].shape == (1, 4) and one["state"].shape == (2, 1, 3) and one["sr"].shape == ()
    assert one["state"] is feed["state"]


def test_a_dim_named_like_a_batch_is_the_batch_axis_wherever_it_sits():
    specs = [_spec("x", [None, 4], ["batch", ""]), _spec("state", [2, None, 3], ["", "batch", ""])]
    feed = {"x": np.zeros((5, 4), np.float32), "state": np.arange(30, dtype=np.float32).reshape(2, 5, 3)}
    assert batch_axes(feed, specs) == {"x": 0, "state": 1}
    np.testing.assert_array_equal(batch_one(feed, specs)["state"], feed["state"][:, :1])


def test_an_unnamed_dynamic_axis_is_the_batch_when_its_length_is_the_others_batch_size():
    specs = [_spec("x", [None, 4], ["unk_0", ""]), _spec("state", [2, None, 3], ["", "unk_1", ""])]
    feed = {"x": np.zeros((5, 4), np.float32), "state": np.zeros((2, 5, 3), np.float32)}
    assert batch_axes(feed, specs) == {"x": 0, "state": 1}


def test_an_image_with_a_static_batch_and_dynamic_sides_is_fed_whole():
    specs = [_spec("image", [1, 3, None, None], ["", "", "height", "width"])]
    feed = {"image": np.zeros((1, 3, 64, 48), np.float32)}
    assert batch_axes(feed, specs) == {"image": None}
    assert batch_one(feed, specs)["image"].shape == (1, 3, 64, 48)


def test_a_scalar_input_stays_a_scalar_through_the_adapter_and_the_state_is_cut_beside_it():
    from autocompress.data.batches import BatchAdapter

    specs = [_spec("x", [None, None]), _spec("state", [2, None, 3]), _spec("sr", [], dtype=np.int64)]
    batch = {"x": np.zeros((5, 8), np.float32), "state": np.zeros((2, 5, 3), np.float32), "sr": np.array(16000)}
    feed, _ = BatchAdapter([batch], specs, prefetch=0).first()
    assert feed["sr"].shape == ()  # np.ascontiguousarray would make it (1,), which ORT refuses for a scalar input
    one = batch_one(feed, specs)
    assert {k: v.shape for k, v in one.items()} == {"x": (1, 8), "state": (2, 1, 3), "sr": ()}
