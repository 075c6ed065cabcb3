"""The user's own inference code (AWS scikit-learn container hooks) and model errors.

Most cases run the real app in-process (`create_app` + httpx's ASGI transport)
on a model directory written by the test; start-up and the model-error answer
are also checked through a real `serve` subprocess. Issue 11 part 2 and issue
12 §2 (server side).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from servingkit import InProcessClient, serve_env, serve_executable, start_serve, write_model
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from serving.app import create_app
from serving.errors import StartupError
from serving.model_loading import load_model
from serving.settings import Settings
from serving.user_code import start_user_code

CSV = {"content-type": "text/csv"}
ROWS = np.array([[0.5, -1.0, 2.0, 0.1], [-2.0, 0.3, 0.0, 1.5], [1.0, 1.0, -1.0, -0.5]])
BODY = "\n".join(",".join(map(repr, row)) for row in ROWS.tolist()).encode()

# Estimators pickled by reference: the test process and `serve` import this module.
FAILING_MODELS = '''
import numpy as np


class Failing:
    """Fitted-looking classifier whose predict fails on more than one row (warm-up sends one)."""

    def __init__(self, kind):
        self.kind = kind
        self.n_features_in_ = 4
        self.classes_ = np.array([0, 1])

    def fit(self, x, y):
        return self

    def predict(self, x):
        if len(x) == 1:
            return np.zeros(1, dtype=int)
        if self.kind == "runtime":
            raise RuntimeError("the booster segfaulted politely")
        if self.kind == "key":
            raise KeyError("missing_feature")
        if self.kind == "count":
            return np.zeros(len(x) - 1, dtype=int)
        raise ValueError("Input contains garbage")
'''


def UNFITTED():  # noqa: N802 - reads as a constant
    return make_pipeline(StandardScaler(), LogisticRegression())


@pytest.fixture(scope="module")
def estimator():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, (x[:, 0] > 0).astype(int))


@pytest.fixture(scope="module")
def failing_module(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("failing")
    (directory / "failing_models.py").write_text(FAILING_MODELS)
    sys.path.insert(0, str(directory))
    return directory


def model_dir(root: Path, estimator, code: str | None = None, *, where: str = "code") -> Path:
    """A model directory as SageMaker unpacks it, with `code` as `<where>/inference.py`."""
    directory = write_model(root / "model", estimator, None)
    if code is not None:
        target = directory / where if where else directory
        target.mkdir(parents=True, exist_ok=True)
        (target / "inference.py").write_text(textwrap.dedent(code))
    return directory


def client_for(directory: Path, **env: str) -> InProcessClient:
    service = start_user_code(directory, env)
    model = service if service is not None else load_model(directory)
    return InProcessClient(create_app(model, Settings.from_env({"SERVING_WORKERS": "1"})))


def labels(estimator) -> list[str]:
    return [str(v) for v in estimator.predict(ROWS)]


# ---------------------------------------------------------------- each hook


def test_model_fn_alone_loads_its_own_file(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        import os, joblib
        def model_fn(model_dir):
            return joblib.load(os.path.join(model_dir, "custom.bin"))
        """,
    )
    (directory / "model.joblib").rename(directory / "custom.bin")
    response = client_for(directory).post("/invocations", content=BODY, headers=CSV)
    assert response.status_code == 200, response.text
    assert response.text.splitlines() == labels(estimator)


def test_input_fn_alone_gets_text_for_csv_and_bytes_otherwise(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        import numpy as np
        def input_fn(input_data, content_type):
            if content_type == "text/csv":
                assert isinstance(input_data, str), type(input_data)
                text = input_data
            else:
                assert isinstance(input_data, bytes), type(input_data)
                assert content_type == "application/x-pipes"
                text = input_data.decode().replace("|", ",")
            return np.array([[float(v) for v in line.split(",")] for line in text.splitlines()])
        """,
    )
    client = client_for(directory)
    csv = client.post("/invocations", content=BODY, headers=CSV)
    assert csv.status_code == 200, csv.text
    assert csv.text.splitlines() == labels(estimator)
    assert csv.headers["content-type"].startswith("text/csv")
    piped = client.post(
        "/invocations",
        content=BODY.replace(b",", b"|"),
        headers={"content-type": "application/x-pipes", "accept": "text/csv"},
    )
    assert piped.status_code == 200, piped.text
    assert piped.text.splitlines() == labels(estimator)


def test_predict_fn_alone_output_encoded_by_the_server(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        def predict_fn(input_data, model):
            return model.predict_proba(input_data)[:, 1]
        """,
    )
    response = client_for(directory).post("/invocations", content=BODY, headers=CSV)
    assert response.status_code == 200, response.text
    got = [float(v) for v in response.text.splitlines()]
    np.testing.assert_allclose(got, estimator.predict_proba(ROWS)[:, 1], rtol=1e-12)


def test_output_fn_alone_str_or_tuple_and_default_accept(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        import json
        def output_fn(prediction, accept):
            body = json.dumps({"labels": prediction.tolist(), "accept": accept})
            if accept == "application/x-tuple":
                return body.encode(), "application/vnd.custom+json"
            return body
        """,
    )
    client = client_for(directory)
    plain = client.post("/invocations", content=BODY, headers=CSV)
    assert plain.status_code == 200, plain.text
    # No Accept: AWS's default, application/json, and the body is sent as that type.
    assert plain.json() == {
        "labels": estimator.predict(ROWS).tolist(),
        "accept": "application/json",
    }
    assert plain.headers["content-type"].startswith("application/json")
    tupled = client.post(
        "/invocations", content=BODY, headers={**CSV, "accept": "application/x-tuple"}
    )
    assert tupled.headers["content-type"].startswith("application/vnd.custom+json")
    assert tupled.json()["accept"] == "application/x-tuple"
    # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT replaces the default, as in AWS's container.
    other = client_for(directory, SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv")
    star = other.post("/invocations", content=BODY, headers={**CSV, "accept": "*/*"})
    assert star.json()["accept"] == "text/csv"


def test_all_hooks_together(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        import json, os, joblib
        import numpy as np
        def model_fn(model_dir):
            return {"clf": joblib.load(os.path.join(model_dir, "model.joblib")), "tag": "v1"}
        def input_fn(input_data, content_type):
            return np.array(json.loads(input_data)["rows"])
        def predict_fn(input_data, model):
            return [f"{model['tag']}:{v}" for v in model["clf"].predict(input_data)]
        def output_fn(prediction, accept):
            return "|".join(prediction), "text/plain"
        """,
    )
    body = json.dumps({"rows": ROWS.tolist()}).encode()
    response = client_for(directory).post(
        "/invocations", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.text == "|".join(f"v1:{v}" for v in labels(estimator))
    assert response.headers["content-type"].startswith("text/plain")


def test_transform_fn_gets_model_body_and_both_types(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        import io
        import numpy as np
        def transform_fn(model, request_body, content_type, accept):
            rows = np.loadtxt(io.StringIO(request_body), delimiter=",", ndmin=2)
            out = ";".join(str(v) for v in model.predict(rows))
            return out, f"text/x-{content_type.split('/')[1]}-{accept.split('/')[1]}"
        """,
    )
    response = client_for(directory).post(
        "/invocations", content=BODY, headers={**CSV, "accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.text == ";".join(labels(estimator))
    assert response.headers["content-type"].startswith("text/x-csv-json")


def test_hooks_taking_the_toolkit_context_argument(tmp_path, estimator):
    directory = model_dir(
        tmp_path,
        estimator,
        """
        def predict_fn(input_data, model, context):
            assert context is None
            return model.predict(input_data)
        """,
    )
    response = client_for(directory).post("/invocations", content=BODY, headers=CSV)
    assert response.text.splitlines() == labels(estimator)


# ------------------------------------------------------- finding the module


SIBLING_PROGRAM = """
from helper import double   # a sibling module in the same directory
def predict_fn(input_data, model):
    return double(model.predict(input_data))
"""


def test_sagemaker_program_in_submit_directory(tmp_path, estimator):
    directory = model_dir(tmp_path, estimator)
    source = tmp_path / "src"
    source.mkdir()
    (source / "entry.py").write_text(SIBLING_PROGRAM)
    (source / "helper.py").write_text("def double(values):\n    return values * 2\n")
    response = client_for(
        directory, SAGEMAKER_PROGRAM="entry.py", SAGEMAKER_SUBMIT_DIRECTORY=str(source)
    ).post("/invocations", content=BODY, headers=CSV)
    assert response.status_code == 200, response.text
    assert response.text.splitlines() == [str(v * 2) for v in estimator.predict(ROWS)]


def test_sagemaker_program_in_the_model_directory(tmp_path, estimator):
    directory = model_dir(tmp_path, estimator)
    (directory / "serve_me.py").write_text(SIBLING_PROGRAM.replace("helper", "helper2"))
    (directory / "helper2.py").write_text("def double(values):\n    return values * 2\n")
    client = client_for(directory, SAGEMAKER_PROGRAM="serve_me")
    response = client.post("/invocations", content=BODY, headers=CSV)
    assert response.text.splitlines() == [str(v * 2) for v in estimator.predict(ROWS)]


def test_no_user_code_keeps_the_plain_server(tmp_path, estimator):
    directory = model_dir(tmp_path, estimator)
    assert start_user_code(directory, {}) is None


# ---------------------------------------------------------- start-up failures


@pytest.mark.parametrize(
    ("code", "env", "fragments"),
    [
        ("def model_fn(:\n    pass\n", {}, ["cannot import", "(line 1)", "SyntaxError"]),
        (
            "import not_a_real_package_xyz\n",
            {},
            ["cannot import", "(line 1)", "ModuleNotFoundError", "not_a_real_package_xyz"],
        ),
        ("x = 1\nraise RuntimeError('boom at import')\n", {}, ["(line 2)", "boom at import"]),
        (
            "def model_fn(model_dir):\n    raise FileNotFoundError('no weights.bin')\n",
            {},
            ["model_fn in", "failed (line 2)", "FileNotFoundError: no weights.bin"],
        ),
        (
            "def model_fn(model_dir):\n    return {'a': 1}\n",
            {},
            ["model_fn in", "returned a dict", "no predict()", "predict_fn"],
        ),
        (
            "def transform_fn(m, b, c, a):\n    pass\ndef input_fn(b, c):\n    pass\n",
            {},
            ["defines transform_fn and input_fn", "one or the other"],
        ),
        (
            "def predict_fn(data):\n    pass\n",
            {},
            ["predict_fn in", "predict_fn(input_data, model)"],
        ),
        ("", {"SAGEMAKER_PROGRAM": "absent.py"}, ["SAGEMAKER_PROGRAM=absent.py", "no absent.py"]),
        (
            "",
            {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/src.tar.gz",
            },
            None,  # code/inference.py exists: used instead of downloading
        ),
        (
            "",
            {"SAGEMAKER_PROGRAM": "other.py", "SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/src.tar.gz"},
            ["is a URL", "does not download code", "under code/"],
        ),
    ],
    ids=[
        "syntax error",
        "missing package",
        "raises at import",
        "model_fn raises",
        "model without predict",
        "transform_fn with input_fn",
        "wrong signature",
        "program not found",
        "s3 submit dir, code packed",
        "s3 submit dir",
    ],
)
def test_start_up_failure_names_file_function_and_error(tmp_path, estimator, code, env, fragments):
    directory = model_dir(tmp_path, estimator, code)
    if fragments is None:
        assert start_user_code(directory, env) is not None
        return
    with pytest.raises(StartupError) as caught:
        start_user_code(directory, env)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    if "SAGEMAKER_PROGRAM" not in env:
        assert str(directory / "code" / "inference.py") in message


def test_missing_model_without_model_fn(tmp_path, estimator):
    directory = model_dir(tmp_path, estimator, "def predict_fn(d, m):\n    return m.predict(d)\n")
    (directory / "model.joblib").unlink()
    with pytest.raises(StartupError, match=r"model\.joblib not found.*define model_fn"):
        start_user_code(directory, {})


@pytest.mark.parametrize(
    ("requirements", "ok"),
    [
        ("# pinned as in the image\nscikit-learn>=1.0\nnumpy  # any\n\n", True),
        ("pandas; python_version < '3'\n", True),  # marker false: not needed here
        ("scikit-learn<0.1\n", False),
        ("surely-not-installed-package-xyz==1.0\n", False),
        ("--index-url https://example.invalid/simple\n", False),
    ],
)
def test_requirements_are_checked_never_installed(tmp_path, estimator, requirements, ok):
    directory = model_dir(tmp_path, estimator, "def predict_fn(d, m):\n    return m.predict(d)\n")
    (directory / "code" / "requirements.txt").write_text(requirements)
    if ok:
        assert start_user_code(directory, {}) is not None
        return
    with pytest.raises(StartupError) as caught:
        start_user_code(directory, {})
    message = str(caught.value)
    assert "requirements.txt needs" in message and "never installs" in message, message
    assert requirements.split("#")[0].split(";")[0].strip().split()[0] in message


# ------------------------------------------------------------ request failures


FAILING_HOOKS = """
import numpy as np
def input_fn(input_data, content_type):
    if input_data.startswith("bad"):
        raise ValueError("cannot parse 'bad' rows")
    return np.array([[float(v) for v in line.split(",")] for line in input_data.splitlines()])
def predict_fn(input_data, model):
    if input_data[0, 0] == 99:
        raise KeyError("feature_99")
    return model.predict(input_data)
def output_fn(prediction, accept):
    if accept == "application/x-crash":
        raise RuntimeError("encoder exploded")
    if accept == "application/x-int":
        return 42
    return ",".join(map(str, prediction))
"""


@pytest.mark.parametrize(
    ("body", "accept", "status", "fragments"),
    [
        (b"bad,1,2,3", None, 400, ["input_fn of", "rejected the request", "ValueError"]),
        (b"99,1,2,3\n1,2,3,4", None, 500, ["model error in predict_fn of", "(2 rows)", "KeyError"]),
        (BODY, "application/x-crash", 500, ["model error in output_fn of", "encoder exploded"]),
        (BODY, "application/x-int", 500, ["output_fn of", "returned a int", "return bytes, str"]),
    ],
    ids=["input_fn", "predict_fn", "output_fn", "output_fn returns int"],
)
def test_hook_failures_status_message_and_log(
    tmp_path, estimator, caplog, body, accept, status, fragments
):
    directory = model_dir(tmp_path, estimator, FAILING_HOOKS)
    client = client_for(directory)
    headers = {**CSV, **({"accept": accept} if accept else {})}
    with caplog.at_level(logging.WARNING, logger="serving"):
        response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == status, response.text
    text = response.text
    assert text.endswith("\n") and "\n" not in text[:-1], text
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in text, text
    assert str(directory / "code" / "inference.py") in text
    deterministic = response.headers.get("x-model-error")
    assert deterministic == ("deterministic" if status == 500 else None)
    assert any(r.exc_info for r in caplog.records), "the traceback must reach the server log"
    # The same app keeps answering.
    good = client.post("/invocations", content=BODY, headers=CSV)
    assert good.status_code == 200 and good.text == ",".join(labels(estimator))


def test_transform_fn_failure_is_a_500_naming_it(tmp_path, estimator):
    code = "def transform_fn(model, body, content_type, accept):\n    return 1 / 0\n"
    response = client_for(model_dir(tmp_path, estimator, code)).post(
        "/invocations", content=BODY, headers=CSV
    )
    assert response.status_code == 500
    assert "model error in transform_fn of" in response.text
    assert "ZeroDivisionError" in response.text


def test_probabilities_with_user_predict_fn_are_refused(tmp_path, estimator):
    code = "def predict_fn(d, m):\n    return m.predict(d)\n"
    response = client_for(model_dir(tmp_path, estimator, code)).post(
        "/invocations", content=BODY, headers={**CSV, "accept": "text/csv; predict_proba=true"}
    )
    assert response.status_code == 400
    assert "predict_fn in" in response.text and "predict_proba" in response.text


# --------------------------------------------- model errors without user code


@pytest.mark.parametrize(
    ("kind", "status", "fragments"),
    [
        (
            "runtime",
            500,
            ["model error in predict (3 rows)", "RuntimeError", "segfaulted politely"],
        ),
        ("key", 500, ["model error in predict (3 rows)", "KeyError", "missing_feature"]),
        ("count", 500, ["model error in predict", "returned 2 predictions for 3 rows"]),
        ("value", 400, ["the model rejected the input", "garbage"]),
    ],
)
def test_model_predict_failures(tmp_path, failing_module, caplog, kind, status, fragments):
    from failing_models import Failing

    client = client_for(write_model(tmp_path / "m", Failing(kind), None))
    with caplog.at_level(logging.WARNING, logger="serving"):
        response = client.post("/invocations", content=BODY, headers=CSV)
    assert response.status_code == status, response.text
    assert response.text.count("\n") == 1 and "Traceback" not in response.text
    for fragment in fragments:
        assert fragment in response.text, response.text
    if status == 500:
        assert response.headers["x-model-error"] == "deterministic"
        error_logs = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert error_logs and (kind == "count" or error_logs[-1].exc_info), caplog.text


def test_a_label_with_a_line_break_is_a_500_in_csv_and_fine_in_json_lines(tmp_path):
    """One line per row is Batch Transform's contract: such a label cannot be CSV output."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4))
    labels = np.where(x[:, 0] > 0, "up\nthere", "down")
    client = client_for(write_model(tmp_path / "m", LogisticRegression().fit(x, labels), None))
    response = client.post("/invocations", content=BODY, headers=CSV)
    assert response.status_code == 500, response.text
    assert response.headers["x-model-error"] == "deterministic"
    assert response.text.count("\n") == 1 and "holds a line break" in response.text
    response = client.post(
        "/invocations", content=BODY, headers={**CSV, "accept": "application/jsonlines"}
    )
    assert response.status_code == 200, response.text
    assert {json.loads(line) for line in response.text.splitlines()} <= {"up\nthere", "down"}


def test_unfitted_model_fails_load(tmp_path):
    directory = write_model(
        tmp_path / "m", make_pipeline(StandardScaler(), LogisticRegression()), None
    )
    with pytest.raises(StartupError, match="unfitted Pipeline"):
        load_model(directory)


# ------------------------------------------------------- real `serve` processes


def test_serve_with_user_code_and_a_failing_predict(tmp_path, failing_module):
    """Through `serve` (2 forked workers): hooks run, a predict error is a one-line 500
    with its traceback in the server log, and the worker keeps serving."""
    from failing_models import Failing

    code = """
    def predict_fn(input_data, model):
        if input_data[0, 0] == 99:
            return model.predict(input_data)   # Failing("runtime") raises for 2+ rows
        return ["ok"] * len(input_data)
    """
    directory = model_dir(tmp_path, Failing("runtime"), code)
    server = start_serve(directory, tmp_path, "serve", PYTHONPATH=str(failing_module))
    try:
        server.wait_ready()
        workers = server.worker_pids()
        ok = server.client.post("/invocations", content=BODY, headers=CSV)
        assert ok.status_code == 200 and ok.text.splitlines() == ["ok"] * 3
        bad = server.client.post("/invocations", content=b"99,1,2,3\n1,2,3,4", headers=CSV)
        assert bad.status_code == 500
        assert bad.headers["x-model-error"] == "deterministic"
        assert bad.text.startswith("model error in predict_fn of ")
        assert "RuntimeError: the booster segfaulted politely" in bad.text
        assert bad.text.count("\n") == 1
        again = server.client.post("/invocations", content=BODY, headers=CSV)
        assert again.status_code == 200
        assert server.worker_pids() == workers
    finally:
        server.stop()
    log = server.log()
    assert "Traceback" in log and "segfaulted politely" in log
    assert "user code" in log and "predict_fn" in log


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("unfitted", "holds an unfitted Pipeline: call fit()"),
        ("model_fn raises", "model_fn in"),
    ],
)
def test_serve_start_up_failure_is_one_line_and_exit_1(tmp_path, case, fragment):
    if case == "unfitted":
        directory = write_model(
            tmp_path / "m", make_pipeline(StandardScaler(), LogisticRegression()), None
        )
    else:
        directory = model_dir(
            tmp_path,
            LogisticRegression().fit([[0.0], [1.0]], [0, 1]),
            "def model_fn(model_dir):\n    raise OSError('disk on fire')\n",
        )
    proc = subprocess.run(
        [serve_executable()],
        env=serve_env(directory, 1),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("serve: error:")]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr
    if case != "unfitted":
        assert "OSError: disk on fire" in lines[0]
        assert str(directory / "code" / "inference.py") in lines[0]


def test_joblib_artifact_with_code_dir_unpacks_and_serves(tmp_path, estimator):
    """model.artifact.pack_model: model.joblib + code/ in model.tar.gz, as SageMaker unpacks it."""
    from model.artifact import list_members, pack_model, unpack_model_archive

    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text("def predict_fn(d, m):\n    return m.predict(d) + 10\n")
    (code / "requirements.txt").write_text("scikit-learn\n")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "inference.cpython-311.pyc").write_bytes(b"junk")
    archive = pack_model(estimator, tmp_path / "model.tar.gz", code_dir=code)
    assert sorted(list_members(archive)) == [
        "code/inference.py",
        "code/requirements.txt",
        "model.joblib",
    ]
    assert pack_model(estimator, tmp_path / "again.tar.gz", code_dir=code).read_bytes() == (
        archive.read_bytes()
    ), "packing is reproducible"
    unpacked = unpack_model_archive(archive, tmp_path / "opt-ml-model")
    response = client_for(unpacked).post("/invocations", content=BODY, headers=CSV)
    assert response.text.splitlines() == [str(v + 10) for v in estimator.predict(ROWS)]
    assert joblib.load(unpacked / "model.joblib").predict(ROWS).tolist() == (
        estimator.predict(ROWS).tolist()
    )
