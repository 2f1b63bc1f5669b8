"""The merchant portal's pages that need only the ``merchants`` app (/merchant/…).

The portal is one site under one URL namespace (``merchant``) but its views live in two places, because
``merchants`` sits below ``bnpl`` and must import nothing from it (docs/architecture.md):

* here, in ``merchants/portal/``: signing in, onboarding, listings, developer settings and the team;
* in ``bnpl/merchant_portal/``: the pages that read or act on orders, charges, settlements and disputes.

``bnpl/merchant_portal/urls.py`` composes the ``urlpatterns`` list of every view module of both packages.
Every view is guarded by :func:`merchants.portal.access.member_required` with the capability it needs.
Templates: ``templates/merchants/``.
"""
