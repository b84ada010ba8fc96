"""Settings.from_env: the KIS_* contract, its defaults, inference, validation and `.env` file."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipelines.settings
from pipelines.kis.client import Credentials
from pipelines.kis.protocol import REAL_BASE_URL, Account
from pipelines.settings import Settings, SettingsError

APP_KEY = "PSkey-0123456789abcdefghijklmnopqrs"
APP_SECRET = "secret/ZYXWVUTSRQPONMLKJIHGFEDCBA+0987654321=="
ACCOUNTS = "11112222-01,33334444-21"
REAL: dict[str, str] = {
    "KIS_APP_KEY": APP_KEY,
    "KIS_APP_SECRET": APP_SECRET,
    "KIS_ACCOUNTS": ACCOUNTS,
}
CORPORATE = {
    "KIS_PERSONALSECKEY": "corp-secret-key-0123",
    "KIS_PHONE_NUMBER": "01011112222",
    "KIS_IP_ADDR": "203.0.113.7",
}


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items()))
    return path


# -- defaults and inference -----------------------------------------------------------------


def test_defaults_are_the_embedded_simulator() -> None:
    settings = Settings.from_env({})
    assert settings.env == "sim"
    assert settings.is_simulated
    assert settings.base_url is None
    assert settings.credentials == pipelines.settings.SIM_CREDENTIALS
    assert len(settings.accounts) == 2
    assert {a.product_code for a in settings.accounts} == {"01", "21"}  # both layouts
    assert len({a.cano for a in settings.accounts}) == 1
    assert settings.custtype == "P"
    # the simulator's data never lands beside a real history (data/)
    assert settings.data_root == (pipelines.settings.REPO_ROOT / "data" / "demo").resolve()


def test_process_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KIS_ACCOUNTS", "55556666-19")
    monkeypatch.setenv("KIS_DATA_ROOT", str(tmp_path / "kis-data"))
    settings = Settings.from_env()
    assert settings.env == "sim"
    assert settings.accounts == (Account("55556666", "19"),)
    assert settings.data_root == (tmp_path / "kis-data").resolve()


def test_app_key_makes_it_real() -> None:
    settings = Settings.from_env(REAL)
    assert settings.env == "real"
    assert not settings.is_simulated
    assert settings.base_url == REAL_BASE_URL
    assert settings.credentials == Credentials(APP_KEY, APP_SECRET)
    assert settings.accounts == (Account("11112222", "01"), Account("33334444", "21"))


def test_explicit_sim_wins_over_an_app_key() -> None:
    settings = Settings.from_env({**REAL, "KIS_ENV": "sim"})
    assert settings.env == "sim"
    assert settings.base_url is None


def test_empty_app_key_does_not_make_it_real() -> None:
    assert Settings.from_env({"KIS_APP_KEY": ""}).env == "sim"


def test_base_url_is_used_without_trailing_slash() -> None:
    assert Settings.from_env({"KIS_BASE_URL": "http://127.0.0.1:8765/"}).base_url == (
        "http://127.0.0.1:8765"
    )
    real = Settings.from_env({**REAL, "KIS_BASE_URL": "https://proxy.example//"})
    assert real.base_url == "https://proxy.example"


def test_custtype_b_is_accepted() -> None:
    settings = Settings.from_env({"KIS_CUSTTYPE": "B", **CORPORATE})
    assert settings.custtype == "B"
    assert settings.corporate is not None
    assert settings.corporate.phone_number == CORPORATE["KIS_PHONE_NUMBER"]
    assert settings.corporate.seq_no == "001"
    assert CORPORATE["KIS_PERSONALSECKEY"] not in repr(settings)
    with pytest.raises(SettingsError, match="KIS_PERSONALSECKEY, KIS_PHONE_NUMBER, KIS_IP_ADDR"):
        Settings.from_env({"KIS_CUSTTYPE": "B"})


def test_data_root_expands_home_and_resolves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.from_env({"KIS_DATA_ROOT": "~/kis"}).data_root == (tmp_path / "kis").resolve()


@pytest.mark.parametrize("name", ["KIS_DATA_ROOT", "KIS_WAREHOUSE", "KIS_TARGETS_FILE"])
def test_relative_paths_are_relative_to_the_repository_from_any_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """The same setting (in .env, which is read from the repository) means the same file from a
    notebook in a subfolder, a shell elsewhere, or the service's working directory."""
    attribute = {"KIS_DATA_ROOT": "data_root", "KIS_WAREHOUSE": "warehouse"}
    seen = set()
    for directory in (tmp_path, pipelines.settings.REPO_ROOT / "tests"):
        monkeypatch.chdir(directory)
        settings = Settings.from_env({name: "rel/thing"})
        seen.add(getattr(settings, attribute.get(name, "targets_file")))
    assert seen == {(pipelines.settings.REPO_ROOT / "rel" / "thing").resolve()}


#: KIS_DATA_ROOT values that look like a URL, or a slip of one, and what the refusal says.
REFUSED_ROOTS = [
    ("s3:kis-bucket", "s3: needs two slashes"),
    ("s3:/kis-bucket/history", "s3:/ needs two slashes"),
    ("S3:kis-bucket", "S3: needs two slashes"),
    ("s3//kis-bucket", "s3// looks like s3:// without its colon"),
    ("S3//kis-bucket", "S3// looks like S3:// without its colon"),
    ("gs//bucket", "gs// looks like gs:// without its colon"),
    ("x:/srv/kis", "x: is a drive letter"),
    ("C:\\kis", "C: is a drive letter"),
    ("D:kis", "D: is a drive letter"),
    ("file:///srv/kis", "a file: URL is not taken: write the path itself (/srv/kis)"),
    ("FILE:/srv/kis", "a FILE: URL is not taken: write the path itself (/srv/kis)"),
    ("gs://bucket/history", "gs:// is a URL this project does not read"),
    ("http://127.0.0.1:9000/bucket", "http:// is a URL this project does not read"),
    ("minio:bucket", "minio: is a URL this project does not read"),
    ("s3://", "not an s3:// URL of a bucket"),
    ("s3:///history", "not an s3:// URL of a bucket"),
    ("s3://Bucket_Name/x", "not an s3:// URL of a bucket"),
    ("s3://bucket/a//b", "not an s3:// URL of a bucket"),
    ("s3://bucket/x?versionId=1", "not an s3:// URL of a bucket"),
    (" /srv/kis", "spaces or a line break at either end"),
    ("/srv/kis\n", "spaces or a line break at either end"),
    ("~no-such-user-here/kis", "cannot expand ~"),
]


@pytest.mark.parametrize(("root", "reason"), REFUSED_ROOTS)
def test_a_url_or_a_slip_of_one_is_refused_naming_the_accepted_forms(
    root: str, reason: str, tmp_path: Path
) -> None:
    """Before, all but the s3:// and scheme:// ones silently became a local folder of that name."""
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"KIS_DATA_ROOT": root})
    message = str(error.value)
    assert message.startswith(f"KIS_DATA_ROOT={root!r}: {reason}"), message
    assert "\n" not in message
    assert message.endswith(
        "expected a local directory (absolute, ~/..., or relative: under "
        f"{pipelines.settings.REPO_ROOT}) or s3://bucket[/prefix]"
    )
    assert not (tmp_path / root.strip()).exists()


@pytest.mark.parametrize(
    ("root", "url"),
    [
        ("s3://kis-bucket", "s3://kis-bucket"),
        ("S3://kis-bucket/history/", "s3://kis-bucket/history"),
        ("s3://kis.bucket-1/a/b", "s3://kis.bucket-1/a/b"),
    ],
)
def test_s3_urls_are_taken_in_either_case(root: str, url: str, tmp_path: Path) -> None:
    settings = Settings.from_env({"KIS_DATA_ROOT": root, "XDG_DATA_HOME": str(tmp_path)})
    assert str(settings.data_root) == url


@pytest.mark.parametrize(
    "root", ["./s3:kis-bucket", "./x:/srv", "archive/s3:old", "data", "s3-archive", "file"]
)
def test_a_local_folder_whose_name_has_a_colon_is_written_from_dot(root: str) -> None:
    data_root = Settings.from_env({"KIS_DATA_ROOT": root}).data_root
    assert data_root == (pipelines.settings.REPO_ROOT / root).resolve()


def test_accounts_tolerate_spaces_and_a_trailing_comma() -> None:
    settings = Settings.from_env({"KIS_ACCOUNTS": " 11112222-01 , 11112222-21, "})
    assert settings.accounts == (Account("11112222", "01"), Account("11112222", "21"))


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({"KIS_ENV": "real"}, ["KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNTS"]),
        ({"KIS_APP_KEY": APP_KEY}, ["KIS_APP_SECRET", "KIS_ACCOUNTS"]),
        ({"KIS_APP_KEY": APP_KEY, "KIS_ACCOUNTS": ACCOUNTS}, ["KIS_APP_SECRET"]),
        ({"KIS_APP_KEY": APP_KEY, "KIS_APP_SECRET": APP_SECRET}, ["KIS_ACCOUNTS"]),
        (
            {"KIS_ENV": "real", "KIS_APP_SECRET": APP_SECRET, "KIS_ACCOUNTS": ACCOUNTS},
            ["KIS_APP_KEY"],
        ),
        ({**REAL, "KIS_APP_SECRET": ""}, ["KIS_APP_SECRET"]),
    ],
)
def test_real_mode_names_what_is_missing(environ: dict[str, str], missing: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    message = str(caught.value)
    named = [name for name in ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNTS") if name in message]
    assert named == missing
    assert APP_SECRET not in message


@pytest.mark.parametrize(
    "bad",
    ["1234-01", "12345678", "12345678-1", "abcdefgh-01", "12345678_01", "12345678-01;87654321-01"],
)
def test_malformed_accounts_are_refused(bad: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KIS_ACCOUNTS": f"11112222-01,{bad}"})
    message = str(caught.value)
    assert "KIS_ACCOUNTS" in message
    assert bad in message


@pytest.mark.parametrize(
    "accounts", ["11112222-01,11112222-01", "11112222-01, 33334444-21 ,11112222-01"]
)
def test_duplicate_accounts_are_refused(accounts: str) -> None:
    with pytest.raises(SettingsError, match="twice"):
        Settings.from_env({"KIS_ACCOUNTS": accounts})


def test_same_cano_with_other_product_is_not_a_duplicate() -> None:
    assert len(Settings.from_env({"KIS_ACCOUNTS": "11112222-01,11112222-19"}).accounts) == 2


@pytest.mark.parametrize("custtype", ["X", "p", "b", "PB"])
def test_malformed_custtype_is_refused(custtype: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KIS_CUSTTYPE": custtype})
    assert "KIS_CUSTTYPE" in str(caught.value) and repr(custtype) in str(caught.value)


@pytest.mark.parametrize("env", ["paper", "REAL", "Sim", "prod"])
def test_malformed_env_is_refused(env: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**REAL, "KIS_ENV": env})
    message = str(caught.value)
    assert "KIS_ENV" in message and repr(env) in message
    assert "sim" in message and "real" in message


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


# -- the .env file --------------------------------------------------------------------------


def test_env_file_values_are_used(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "custom.env", {**REAL, "KIS_CUSTTYPE": "B", **CORPORATE})
    settings = Settings.from_env({}, env_file=env_file)
    assert settings.env == "real"
    assert settings.credentials == Credentials(APP_KEY, APP_SECRET)
    assert [a.id for a in settings.accounts] == ACCOUNTS.split(",")
    assert settings.custtype == "B"


def test_environment_overrides_the_env_file(tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path / "custom.env",
        {**REAL, "KIS_CUSTTYPE": "B", **CORPORATE, "KIS_BASE_URL": "http://file"},
    )
    settings = Settings.from_env(
        {"KIS_ACCOUNTS": "99998888-19", "KIS_CUSTTYPE": "P"}, env_file=env_file
    )
    assert settings.accounts == (Account("99998888", "19"),)  # from the environment
    assert settings.custtype == "P"  # from the environment
    assert settings.credentials == Credentials(APP_KEY, APP_SECRET)  # from the file
    assert settings.base_url == "http://file"  # from the file
    # A variable set in the environment wins even when empty.
    assert Settings.from_env({"KIS_APP_KEY": ""}, env_file=env_file).env == "sim"
    assert Settings.from_env({"KIS_ENV": "sim"}, env_file=env_file).env == "sim"


def test_default_env_file_is_the_module_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = write_env(tmp_path / "project.env", {"KIS_ACCOUNTS": "77776666-01"})
    monkeypatch.setattr(pipelines.settings, "ENV_FILE", env_file)
    assert Settings.from_env({}).accounts == (Account("77776666", "01"),)


def test_absent_env_file_is_ignored(tmp_path: Path) -> None:
    assert Settings.from_env({}, env_file=tmp_path / "missing.env").env == "sim"


def test_malformed_values_in_the_env_file_are_refused(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "custom.env", {"KIS_ACCOUNTS": "1234-5678"})
    with pytest.raises(SettingsError, match="KIS_ACCOUNTS"):
        Settings.from_env({}, env_file=env_file)


def test_missing_values_error_names_the_env_file_that_was_read(tmp_path: Path) -> None:
    env_file = write_env(tmp_path / "custom.env", {"KIS_APP_KEY": APP_KEY})
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({}, env_file=env_file)
    assert str(env_file) in str(caught.value)


# -- secrets --------------------------------------------------------------------------------


def test_app_secret_is_not_in_repr(tmp_path: Path) -> None:
    from_environ = Settings.from_env(REAL)
    from_file = Settings.from_env({}, env_file=write_env(tmp_path / "custom.env", REAL))
    for settings in (from_environ, from_file):
        assert settings.credentials.app_secret == APP_SECRET  # it is there, just not shown
        assert APP_SECRET not in repr(settings)
        assert APP_SECRET not in str(settings)
        assert APP_SECRET not in repr(settings.credentials)


# -- issue 3: accounts file, rate limit, simulator faults --------------------------------


def write_accounts(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_accounts_file_gives_accounts_their_own_keys(tmp_path: Path) -> None:
    accounts_file = write_accounts(
        tmp_path / "accounts.toml",
        '[[account]]\nid = "12345678-01"\n\n'
        '[[account]]\nid = "87654321-21"\napp_key_env = "K2"\napp_secret_env = "S2"\n',
    )
    settings = Settings.from_env(
        {
            **REAL,
            "KIS_ACCOUNTS": "11112222-01",
            "KIS_ACCOUNTS_FILE": str(accounts_file),
            "K2": "second-key",
            "S2": "second-secret",
        }
    )
    assert [a.id for a in settings.accounts] == ["11112222-01", "12345678-01", "87654321-21"]
    groups = settings.key_groups()
    assert [(c.app_key, [a.id for a in accounts]) for c, accounts in groups] == [
        (APP_KEY, ["11112222-01", "12345678-01"]),
        ("second-key", ["87654321-21"]),
    ]
    assert "second-secret" not in repr(settings)


def test_accounts_file_alone_selects_real_mode_and_needs_no_default_key(tmp_path: Path) -> None:
    accounts_file = write_accounts(
        tmp_path / "a.toml",
        '[[account]]\nid = "12345678-01"\napp_key_env = "K"\napp_secret_env = "S"\n',
    )
    settings = Settings.from_env({"KIS_ACCOUNTS_FILE": str(accounts_file), "K": "k", "S": "s"})
    assert settings.env == "real"
    assert settings.key_groups()[0][0] == Credentials("k", "s")


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ('[[account]]\nid = "12345678-01"\napp_secret = "oops"\n', {}, "Secrets never go"),
        ('[[account]]\nid = "1234-01"\n', {}, "8 digits"),
        ('[[account]]\nid = "12345678-01"\napp_key_env = "K"\n', {}, "both app_key_env"),
        (
            '[[account]]\nid = "12345678-01"\napp_key_env = "K"\napp_secret_env = "S"\n',
            {"K": "k"},
            "S not set",
        ),
        ('[[account]]\nid = "12345678-01"\n[[account]]\nid = "12345678-01"\n', {}, "twice"),
        ("[[account]\n", {}, "KIS_ACCOUNTS_FILE"),
    ],
)
def test_bad_accounts_files_are_refused_clearly(
    tmp_path: Path, text: str, extra: dict[str, str], message: str
) -> None:
    accounts_file = write_accounts(tmp_path / "a.toml", text)
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**REAL, "KIS_ACCOUNTS_FILE": str(accounts_file), **extra})


def test_rate_limit_and_simulator_faults_are_validated() -> None:
    assert Settings.from_env({"KIS_RATE_LIMIT": "12.5"}).rate_limit == 12.5
    for bad in ("0", "-3", "fast"):
        with pytest.raises(SettingsError, match="KIS_RATE_LIMIT"):
            Settings.from_env({"KIS_RATE_LIMIT": bad})
    assert Settings.from_env({"KIS_SIM_FAULTS": "*:hang*1=2"}).sim_faults == "*:hang*1=2"
    with pytest.raises(SettingsError, match="KIS_SIM_FAULTS"):
        Settings.from_env({"KIS_SIM_FAULTS": "*:explode"})


# -- waits and sizes (issue 16) -------------------------------------------------------------


def test_waits_and_the_body_limit_have_defaults_and_reach_every_client() -> None:
    from pipelines.ingest.fetch import open_client

    default = Settings.from_env(REAL)
    assert (default.request_deadline, default.account_budget) == (60.0, 180.0)
    assert default.max_body_bytes == 1 << 20
    chosen = Settings.from_env(
        {
            **REAL,
            "KIS_REQUEST_DEADLINE": "2.5",
            "KIS_ACCOUNT_BUDGET": "10",
            "KIS_MAX_BODY_BYTES": "4096",
        }
    )
    client = open_client(chosen)
    assert (client.request_deadline, client.account_budget, client.max_body_bytes) == (
        2.5,
        10.0,
        4096,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KIS_REQUEST_DEADLINE", "0", "expected seconds, more than 0 and at most 3600"),
        ("KIS_REQUEST_DEADLINE", "-5", "expected seconds"),
        ("KIS_REQUEST_DEADLINE", "a minute", "expected seconds"),
        ("KIS_REQUEST_DEADLINE", "nan", "expected seconds"),
        ("KIS_REQUEST_DEADLINE", "inf", "expected seconds"),
        ("KIS_ACCOUNT_BUDGET", "7200", "at most 3600"),
        ("KIS_MAX_BODY_BYTES", "1MB", "expected a whole number of bytes from 1,024"),
        ("KIS_MAX_BODY_BYTES", "100", "from 1,024 to 1,073,741,824"),
        ("KIS_MAX_BODY_BYTES", "-1", "whole number of bytes"),
    ],
)
def test_waits_and_the_body_limit_are_validated_by_name(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**REAL, name: value})
    assert str(caught.value).startswith(f"{name}={value!r}: ")
    assert says in str(caught.value)


def test_a_budget_shorter_than_one_requests_deadline_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**REAL, "KIS_REQUEST_DEADLINE": "30", "KIS_ACCOUNT_BUDGET": "20"})
    assert "KIS_ACCOUNT_BUDGET=20 is less than KIS_REQUEST_DEADLINE=30" in str(caught.value)
    equal = Settings.from_env({**REAL, "KIS_REQUEST_DEADLINE": "20", "KIS_ACCOUNT_BUDGET": "20"})
    assert equal.account_budget == 20


def test_object_store_limits_are_read_and_validated_by_name() -> None:
    from pipelines.storage.roots import ObjectPath

    root = {"KIS_DATA_ROOT": "s3://kis-bucket/history"}
    default = Settings.from_env(root).data_root
    assert isinstance(default, ObjectPath)
    access = default.storage.access
    assert (access.connect_timeout, access.read_timeout, access.attempts) == (5.0, 30.0, 3)
    chosen = Settings.from_env(
        {
            **root,
            "KIS_S3_CONNECT_TIMEOUT": "1.5",
            "KIS_S3_READ_TIMEOUT": "4",
            "KIS_S3_ATTEMPTS": "2",
        }
    ).data_root
    assert isinstance(chosen, ObjectPath)
    access = chosen.storage.access
    assert (access.connect_timeout, access.read_timeout, access.attempts) == (1.5, 4.0, 2)
    for name, bad in [
        ("KIS_S3_CONNECT_TIMEOUT", "0"),
        ("KIS_S3_READ_TIMEOUT", "soon"),
        ("KIS_S3_ATTEMPTS", "0"),
        ("KIS_S3_ATTEMPTS", "11"),
    ]:
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({**root, name: bad})
        assert str(caught.value).startswith(f"{name}={bad!r}: expected")


# -- the settings files and their precedence (issue 18) -----------------------------------


def test_environment_over_kis_env_over_the_legacy_dot_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = write_env(
        tmp_path / ".env",
        {"KIS_ACCOUNTS": "11110000-01", "KIS_CUSTTYPE": "B", "KIS_RATE_LIMIT": "5", **CORPORATE},
    )
    current = write_env(tmp_path / "kis.env", {"KIS_ACCOUNTS": "22220000-01", "KIS_CUSTTYPE": "P"})
    monkeypatch.setattr(pipelines.settings, "LEGACY_ENV_FILE", legacy)
    monkeypatch.setattr(pipelines.settings, "ENV_FILE", current)
    with caplog.at_level("WARNING", logger="pipelines.settings"):
        settings = Settings.from_env({})
        assert Settings.from_env({"KIS_ACCOUNTS": "33330000-01"}).accounts == (
            Account("33330000", "01"),
        )
    assert settings.accounts == (Account("22220000", "01"),)  # kis.env over .env
    assert settings.custtype == "P"
    assert settings.rate_limit == 5  # .env where kis.env says nothing
    # said once per process, with the way out
    [warning] = [r.getMessage() for r in caplog.records if ".env" in r.getMessage()]
    assert f"mv {legacy} {current}" in warning and "cannot win" in warning


def test_variable_names_are_matched_as_written() -> None:
    """As before pydantic-settings, which matches names in any case by default."""
    assert Settings.from_env({"kis_env": "real", "Kis_Accounts": "11112222-01"}).env == "sim"


def test_kis_settings_file_names_the_settings_file(tmp_path: Path) -> None:
    named = write_env(tmp_path / "elsewhere.env", {"KIS_ACCOUNTS": "44440000-21"})
    settings = Settings.from_env({"KIS_SETTINGS_FILE": str(named)})
    assert settings.accounts == (Account("44440000", "21"),)
    # a file that is not there is no settings at all, as an absent kis.env
    assert Settings.from_env({"KIS_SETTINGS_FILE": str(tmp_path / "none.env")}).env == "sim"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KIS_ENV", "reall", "KIS_ENV='reall': expected one of sim, real"),
        ("KIS_CUSTTYPE", "C", "KIS_CUSTTYPE='C': expected P (personal) or B (corporate)"),
        ("KIS_SHARDS", "0", "KIS_SHARDS='0': expected a whole number from 1 to 256"),
        ("KIS_KEYS_IN_FLIGHT", "many", "KIS_KEYS_IN_FLIGHT='many': expected a whole number"),
        ("KIS_CAPTURE_DAYS", "someday", "KIS_CAPTURE_DAYS='someday': 'someday' is not a day"),
    ],
)
def test_each_refusal_is_one_line_naming_the_variable_value_and_what_is_accepted(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    """From the environment or the file alike; the secrets set beside it never shown."""
    secrets = {"KIS_APP_SECRET": APP_SECRET, "KIS_PERSONALSECKEY": "corp-secret-key-0123"}
    env_file = write_env(tmp_path / "kis.env", {**REAL, **secrets, name: value})
    for environ, file in (
        ({**REAL, **secrets, name: value}, tmp_path / "none.env"),
        ({}, env_file),
    ):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env(environ, env_file=file)
        message = str(caught.value)
        assert message.startswith(says), message
        assert "\n" not in message
        assert APP_SECRET not in message and "corp-secret" not in message


def test_several_wrong_variables_are_named_in_the_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"KIS_ENV": "reall", "KIS_SHARDS": "0", "KIS_RATE_LIMIT": "fast"})
    assert str(caught.value) == (
        "KIS_ENV='reall': expected one of sim, real (also wrong: KIS_RATE_LIMIT, KIS_SHARDS)"
    )
