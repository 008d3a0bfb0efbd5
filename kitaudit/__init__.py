"""kitaudit: KitOps-compatible ModelKits with ML-BOMs, Sigstore signatures, admission
checks, registry audits and compliance reports.

Every CLI command is a call into one of the modules of this package; see
``docs/library.md`` for the Python API.
"""

__version__ = "0.1.0"
