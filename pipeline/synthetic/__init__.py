"""Drawn images: gems, jewelry, certificates and junk, hands and props, from seeded names.

The demo storefront sells them and the filter's junk head trains on them, so neither depends
on the other. May import: ``pipeline.core`` only.
"""
