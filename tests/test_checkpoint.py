import pytest
import torch

from linf_opt import DataError
from linf_opt.training.checkpoint import load_checkpoint, save_atomic, write_text_atomic


def test_atomic_checkpoint_survives_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_atomic({"x": torch.ones(3)}, path)

    def boom(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_atomic({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_missing_or_corrupt_checkpoint_raises(tmp_path):
    with pytest.raises(DataError, match="no file"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="could not be loaded"):
        load_checkpoint(tmp_path / "bad.pt")


def test_weights_only_refuses_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(DataError):
        load_checkpoint(tmp_path / "evil.pt")


def test_write_text_atomic(tmp_path):
    write_text_atomic("α = 1\n", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "α = 1\n"
