"""Engine.IO adjustments that keep long-polling clients from losing data.

python-engineio's payload decoder refuses a polling body of more than 16 packets, in the
server and in the python-socketio client alike (the client then drops the connection with
"transport error"). So:

* the server accepts bodies of any packet count (the body size is bounded by
  ``max_http_buffer_size`` already): clients that emit quickly lose nothing;
* the server hands at most 16 packets to one long-poll response; the rest wait for the next
  poll, which the client sends at once. Order is unchanged.
"""

from __future__ import annotations

import engineio
import engineio.payload
import socketio
from engineio import exceptions

CLIENT_MAX_PACKETS_PER_POLL = 16
SERVER_MAX_DECODE_PACKETS = 10_000


class BoundedPollSocket(engineio.socket.Socket):
    """An Engine.IO 4 socket whose long-poll responses hold at most 16 packets."""

    def poll(self) -> list:
        queue_empty = self.server.get_queue_empty_exception()
        try:
            first = self.queue.get(timeout=self.server.ping_interval + self.server.ping_timeout)
            self.queue.task_done()
        except queue_empty:
            raise exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets = [first]
        while len(packets) < CLIENT_MAX_PACKETS_PER_POLL:
            try:
                pkt = self.queue.get(block=False)
                self.queue.task_done()
            except queue_empty:
                break
            if pkt is None:
                self.queue.put(None)
                break
            packets.append(pkt)
        return packets


class GruSocketServer(socketio.Server):
    """python-socketio's server with the polling fixes above."""

    def __init__(self, *args, **kwargs) -> None:
        engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets,
                                                          SERVER_MAX_DECODE_PACKETS)
        super().__init__(*args, **kwargs)

    def _handle_eio_connect(self, eio_sid: str, environ: dict):
        socket = self.eio.sockets.get(eio_sid)
        if type(socket) is engineio.socket.Socket:
            socket.__class__ = BoundedPollSocket  # same state, bounded poll()
        return super()._handle_eio_connect(eio_sid, environ)
