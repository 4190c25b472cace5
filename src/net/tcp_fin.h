// The FINs of a half-closed or closing TCP connection (CLOSE_WAIT,
// FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING).
//
// TCP_REPAIR makes a connection ESTABLISHED at connect (tcp_repair_connect)
// and has no option for a FIN, so the dump records the data without the FINs
// (a FIN takes one sequence number: write_seq and rcv_nxt count it, the
// queues hold no byte of it) and says which FIN was where; the restore makes
// the connection ESTABLISHED, then brings the FINs back as the kernel itself
// would have them:
// - our FIN sent: shutdown(SHUT_WR) in repair mode with the send queue
//   selected queues it as sent, not transmitted (tcp_send_fin, then
//   tcp_write_xmit marks it sent in repair mode): FIN_WAIT1 from
//   ESTABLISHED, LAST_ACK from CLOSE_WAIT. If the peer had acknowledged it
//   (FIN_WAIT2), the acknowledgement comes again after the restore (the
//   window probe at the end of repair mode, or the retransmitted FIN);
// - our FIN not sent yet (behind unsent bytes or a zero window): the
//   shutdown comes after the unsent bytes, once repair mode is off;
// - the peer's FIN received: a FIN segment from the peer's address, made by
//   cryo on a raw socket and marked to pass the network lock
//   (kNetLockPassMark), at the next sequence number the connection expects:
//   the kernel takes it as any FIN (tcp_fin): CLOSE_WAIT, and read(2)
//   returns the queued bytes, then 0. It is sent once every connection of
//   the restore exists, so that the acknowledgement the socket answers with
//   finds its peer (both ends in the tree) or the lock.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// TcpSocket.our_fin.
enum OurFin : uint32_t { kNoFin = 0, kFinUnsent = 1, kFinSent = 2, kFinAcked = 3 };

// Whether cryo restores a connection in `state` (TCP_*).
bool RestorableTcpState(int state);
// Whether the peer's FIN came in `state` (CLOSE_WAIT, LAST_ACK, CLOSING).
bool PeerFinReceived(int state);
// Whether our FIN is queued in `state` (FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING).
bool OurFinQueued(int state);

// Dump: takes our FIN out of the counts read in repair mode (outq: SIOCOUTQ,
// unsent: SIOCOUTQNSD) and records both FINs in t (our_fin, peer_fin; then
// TCP_QUEUE_SEQ of either queue counts one more than its bytes). t.state()
// is set.
Status ExcludeFins(image::TcpSocket* t, int* outq, int* unsent, const std::string& what);

// Restore, in repair mode: the window TCP_REPAIR_WINDOW is given; with the
// peer's FIN still to come, its right edge is kept but rcv_wup may not pass
// rcv_nxt (tcp_repair_set_window).
void AdjustWindowForPeerFin(const image::TcpSocket& t, uint32_t* rcv_wup, uint32_t* rcv_wnd);

// What the restore does to a connection's FINs (net/tcp_session.cc calls these).
struct TcpFins {
  int state = 0;
  uint32_t our_fin = kNoFin;
  bool peer_fin = false;
  int family = 0;
  std::string local, peer;
  uint32_t peer_fin_seq = 0;  // the sequence number of the peer's FIN
  uint32_t ack = 0;           // snd_una at the restore
  uint32_t window = 0;        // the peer's window, unscaled
  uint32_t send_wscale = 0;
};
TcpFins FinsOf(const image::TcpSocket& t);
// Every connection of the restore made, still in repair mode.
Status RestoreFinsInRepair(int fd, const TcpFins& f, const std::string& what);
// Repair mode off, the unsent bytes sent: our FIN not sent yet goes after them.
Status RestoreFinsAfterRepair(int fd, const TcpFins& f, const std::string& what);

}  // namespace cryo
