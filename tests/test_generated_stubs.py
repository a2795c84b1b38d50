"""The committed gRPC stubs are exactly what `make proto` generates from protos/."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_stubs_have_not_drifted() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_proto_package_is_generated_with_type_stubs() -> None:
    protos = sorted(p.stem for p in (ROOT / "protos").glob("*/v1/*.proto"))
    generated = ROOT / "generated" / "src" / "grpc_stubs"
    for name in protos:
        package = generated / name / "v1"
        assert (package / f"{name}_pb2.py").exists()
        assert (package / f"{name}_pb2.pyi").exists()
        assert (package / f"{name}_pb2_grpc.py").exists()
