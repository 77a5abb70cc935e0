"""Admission: when a request may go, under each key's RPM/ITPM/OTPM limits.

Token buckets, the local budget and what narrows it (floor, foreign traffic, requests in
transit), the one-heap `Gate` scheduler, its reservations, lanes and limits presets. It
imports only `core` and `errors`.
"""
