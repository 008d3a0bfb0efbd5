"""Media types, artifact types and annotation keys used by ModelKits, ModelPack,
OCI and cosign. Facts from the KitOps, ModelPack, OCI and cosign formats."""

from __future__ import annotations

# OCI
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_EMPTY_DATA = b"{}"
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST)

ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CREATED = "org.opencontainers.image.created"

# KitOps ModelKit
KIT_ARTIFACT_TYPE = "application/vnd.kitops.modelkit.manifest.v1+json"
KIT_CONFIG = "application/vnd.kitops.modelkit.config.v1+json"
KIT_LAYER_PREFIX = "application/vnd.kitops.modelkit."
KIT_MCPB_RAW = "application/vnd.kitops.modelkit.mcpb.v1.raw"
ANN_CLI_VERSION = "ml.kitops.modelkit.cli-version"
ANN_LAYER_SUBTYPE = "ml.kitops.modelkit.layer-subtype"
ANN_KITFILE = "ml.kitops.modelkit.kitfile"
ANN_FILEPATH = "org.cncf.model.filepath"

# CNCF ModelPack
MODELPACK_ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODELPACK_LAYER_PREFIX = "application/vnd.cncf.model."

# SBOM / signatures
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
ANN_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANN_BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
PREDICATE_COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
PREDICATE_CYCLONEDX = "https://cyclonedx.org/bom"
PREDICATE_CYCLONEDX_OLD = "https://cyclonedx.org/schema"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"

# Layer kinds (KitOps names), in the order kit writes them.
LAYER_KINDS = ("model", "modelpart", "code", "dataset", "docs", "prompts", "mcpservers")


def kit_layer_media_type(base: str, fmt: str = "tar", compression: str = "none") -> str:
    """``application/vnd.kitops.modelkit.<base>.v1.<fmt>[+gzip|+zstd]``."""
    suffix = {"none": "", "gzip": "+gzip", "gzip-fastest": "+gzip", "zstd": "+zstd"}[compression]
    return f"{KIT_LAYER_PREFIX}{base}.v1.{fmt}{suffix}"


def parse_kit_layer_media_type(media_type: str) -> tuple[str, str, str] | None:
    """Return (base, fmt, compression) for a KitOps or ModelPack layer media type.

    Compression is one of ``none``, ``gzip``, ``zstd``. ModelPack bases are mapped to
    KitOps names (weight → model, weight.config → modelpart, doc → docs).
    Returns None for anything else.
    """
    if media_type == KIT_MCPB_RAW:
        return ("mcpservers", "raw", "none")
    for prefix, mapping in ((KIT_LAYER_PREFIX, {}),
                            (MODELPACK_LAYER_PREFIX, {"weight": "model",
                                                      "weight.config": "modelpart",
                                                      "doc": "docs"})):
        if not media_type.startswith(prefix):
            continue
        rest = media_type[len(prefix):]
        if ".v1." not in rest:
            return None
        base, tail = rest.split(".v1.", 1)
        compression = "none"
        if "+" in tail:
            tail, compression = tail.split("+", 1)
        if tail not in ("tar", "raw") or compression not in ("none", "gzip", "zstd"):
            return None
        base = mapping.get(base, base)
        return (base, tail, compression)
    return None
