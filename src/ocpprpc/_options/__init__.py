"""Settings shared by the station and the CSMS: plain frozen dataclasses.

May import: the standard library only.
Never imports: anyio, any I/O library, or any other part of ocpprpc.
"""
