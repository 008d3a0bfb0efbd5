"""Kubernetes validating admission webhook for ModelKits (``kitaudit admission serve``).

* :mod:`kitaudit.admission.extract` — ModelKit references in Pods, InferenceServices
  and pod templates
* :mod:`kitaudit.admission.review` — AdmissionReview v1 requests and responses
* :mod:`kitaudit.admission.cache` — positive-only result cache
* :mod:`kitaudit.admission.verifier` — the adapter over ``kitaudit.verify``
* :mod:`kitaudit.admission.server` — decisions (:class:`AdmissionController`) and the
  HTTPS server (:class:`WebhookServer`)

See docs/admission.md.
"""
