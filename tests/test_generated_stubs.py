"""The committed gRPC stubs are exactly what `make proto` generates from protos/, and mypy reads
them: messages, aio client stubs and servicers are typed, not Any."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated" / "src" / "grpc_stubs"


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
    # PEP 561: without the marker mypy treats the installed package as untyped.
    assert (GENERATED / "py.typed").exists()
    for name in protos:
        package = GENERATED / name / "v1"
        assert (package / f"{name}_pb2.py").exists()
        assert (package / f"{name}_pb2.pyi").exists()
        assert (package / f"{name}_pb2_grpc.py").exists()
        assert (package / f"{name}_pb2_grpc.pyi").exists()


def test_mypy_types_aio_calls_and_servicers_from_the_stubs(tmp_path: Path) -> None:
    """An awaited call on a grpc.aio channel has the response message's type, and a servicer
    method that returns another message is an error mypy reports."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """\
            from typing import assert_type

            import grpc

            from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc


            async def list_models(channel: grpc.aio.Channel) -> None:
                stub = text_pb2_grpc.TextServiceStub(channel)
                reply = await stub.ListModels(text_pb2.ListModelsRequest(), timeout=1.0)
                assert_type(reply, text_pb2.ListModelsResponse)


            class WrongReply(text_pb2_grpc.TextServiceServicer):
                async def ListModels(  # the one error expected
                    self, request: text_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
                ) -> text_pb2.GenerateResponse:
                    return text_pb2.GenerateResponse()
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            "--no-error-summary",
            "--show-error-codes",
            str(sample),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert "sample.py:15:" in errors[0], result.stdout
    assert "[override]" in errors[0], result.stdout
