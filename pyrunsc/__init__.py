"""pyrunsc: an application kernel in Python. `import pyrunsc` stays light
(every OCI runtime call imports it): the Python API is loaded on first use
of pyrunsc.Sandbox (see pyrunsc.api)."""

_API = ("Sandbox", "SandboxProcess", "SandboxError", "CompletedProcess", "TimeoutExpired",
        "CalledProcessError", "PIPE", "DEVNULL", "STDOUT")


def __getattr__(name):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'pyrunsc' has no attribute {name!r}")
