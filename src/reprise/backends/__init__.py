"""Cache stores behind one protocol (:mod:`reprise.backends.base`).

Nothing is imported here on purpose: each backend module is loaded only when
configured (see :mod:`reprise.backends.registry`), so optional dependencies
stay optional and ``import reprise`` stays cheap.
"""
