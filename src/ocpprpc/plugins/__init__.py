"""Plugins (empty until the plugins issue).

May import: the public ``ocpprpc`` API.
Never imports: _cli.
"""
