"""The registry's pages: a PIC's registration and console, and the operators' console.

Every page acts through ``registry.service.Registry``, as the API does: the pages hold no
rules of their own beyond reading a form and saying in the person's language what the
registry answered.
"""
