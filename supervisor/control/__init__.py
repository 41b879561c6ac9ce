"""A running pod's control socket: what `podvisor ps`, `status`, `logs`, `exec` ... talk to.

`paths` says where the sockets live; `wire` holds the messages, typed, and
their one encode/decode pair; `client` is the command line's blocking end;
`server` binds the socket and accepts; `connection` is one client's
connection, typed; `handlers` answers the requests from the pod's view;
`logs` streams a pod's log lines.
"""
