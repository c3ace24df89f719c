"""The root of every error the protocol package raises."""


class ProtocolError(ValueError):
    """Something does not follow Pintu's wire contract."""


class TrustListError(ProtocolError):
    """A trust list file cannot be read or does not follow its format."""


class KeyFileError(ProtocolError):
    """A signing key file cannot be read or is not an Ed25519 private key."""
