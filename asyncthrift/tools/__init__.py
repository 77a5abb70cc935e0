"""Programs on top of the library: the command line, the demo, the load test and their
helpers. Nothing in the library imports them.
"""
