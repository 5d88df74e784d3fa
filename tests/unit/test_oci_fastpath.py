"""The quick path of the runtime's command line takes exactly the shapes
containerd and conmon send and leaves everything else to click."""
from pyrunsc.oci.fastpath import _globals, _parse

DOCKER = ["--root", "/run/docker/runtime-runc/moby", "--log", "/x/log.json", "--log-format", "json"]


def parse(argv):
    g = _globals(argv)
    return None if g is None else (g[0], _parse(g[1]))


def test_docker_shapes():
    flags, (cmd, o) = parse(DOCKER + ["create", "--bundle", "/b", "--pid-file", "/b/init.pid", "ID"])
    assert flags["--root"] == "/run/docker/runtime-runc/moby" and flags["--log-format"] == "json"
    assert (cmd, o["id"], o["--bundle"], o["--pid-file"], o["--console-socket"]) == \
        ("create", "ID", "/b", "/b/init.pid", None)
    _, (cmd, o) = parse(DOCKER + ["kill", "ID", "9"])
    assert (cmd, o["id"], o["signal"], o["all"]) == ("kill", "ID", "9", False)
    _, (cmd, o) = parse(DOCKER + ["delete", "--force", "ID"])
    assert (cmd, o["force"]) == ("delete", True)
    _, (cmd, o) = parse(["--strace", "--network=sandbox", "start", "ID"])
    assert cmd == "start" and o["id"] == "ID"
    _, (cmd, o) = parse(["create", "-b=/b", "--console-socket", "/s", "--no-pivot", "ID"])
    assert (o["--bundle"], o["--console-socket"]) == ("/b", "/s")


def test_everything_else_goes_to_click():
    for argv in (["exec", "ID", "sh"], ["--help"], ["start"], ["start", "a", "b"], ["kill", "ID", "9", "x"],
                 ["--unknown", "start", "ID"], ["--root"], ["delete", "--bogus", "ID"], ["create", "--bundle"],
                 ["state", "--help"], ["do", "--", "true"], []):
        got = parse(argv)
        assert got is None or got[1] is None, argv
