// Package service is the daxstack daemon: it owns the database while it
// runs, so there is one writer, and makes failures travel by themselves.
//
// It is a package of its own because it holds everything long-running that
// the engine (package control) must not know about: the unix socket and
// its protocol, peer credentials, the kernel uevent listener
// (service/uevent), the sysfs badblocks watcher (service/sysfswatch), the
// periodic rescan, and the streaming of events to holders and watchers.
//
// Protocol: one JSON object per line in each direction over a unix stream
// socket. A request is {"id":N,"method":M,"params":{...}}; its response is
// {"id":N,"result":{...}} or {"id":N,"error":{...}} (control.WireError,
// which rebuilds the engine's own error on the client, text and
// sentinels). The methods are those of control.API (dispatch.go), and
// Client implements control.API over them, so a command reads the same
// through the daemon as embedded. A client that goes away ends the
// command it was waiting for (its context).
//
// The method "open" ({"name":DEV,"write":BOOL}) opens a device for I/O as
// a user: after its answer ({"size":BYTES,"readonly":BOOL}) the connection
// carries binary frames only, requests and replies of a handle (see
// frames.go), until it closes, which closes the handle.
// The method "subscribe" ({"since":SEQ,"devices":[...]}) turns the
// connection into an event stream: the server answers {"id":N,"result":
// {"devices":[...],"since":SEQ}}, then sends {"id":N,"event":{...}} for
// every logged event after SEQ, first from the log and then as they are
// committed, and the client may send {"ack":SEQ} when it has handled events
// up to SEQ. Delivery is at least once: a subscriber that reconnects with
// its last handled SEQ misses nothing. With "holder":NAME the connection
// first claims the devices for NAME (the answer names them as events do),
// so the claims live exactly as long as the stream, and a holder that
// reconnects after a daemon restart claims them again. A pre-remove waits
// (up to Config.AckTimeout) until the holder of every device it concerns
// has acknowledged that device's event.
//
// Access (peer.go, the rules in one place): the socket is mode 0660,
// owned by root and the configured group. The server reads the peer's
// credentials on every connection (SO_PEERCRED and SO_PEERGROUPS, as the
// kernel recorded them at connect); methods that change state, and reading
// or writing device data ("open", every I/O handle and stream), are
// allowed to root and members of the group only, reports to anyone who can
// connect. Every command runs for its peer (control.WithPeer): the engine
// uses only leaves the peer could open itself, read-write unless the
// device is read-only (control's peer.go), and starts the peer's relative
// paths at the directory the client sends with each request ("dir"). A
// claim made through the socket belongs to the connection: it ends when
// the client goes away (not when the daemon stops: the claim stays
// recorded with the holder's PID, and lasts as long as that process).
package service
