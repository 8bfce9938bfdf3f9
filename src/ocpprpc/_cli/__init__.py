"""``python -m ocpprpc``: the command line, the demo CSMS and the station scenario.

May import: every other part (it is the top of the stack).
Nothing else in ocpprpc imports it (except ``__main__``).
"""
