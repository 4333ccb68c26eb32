// What appears in the library's public signatures comes with `import Cluster`: the JSON value of IPC
// messages (and its Codable bridge) and the socket address of datagrams.
@_exported import ClusterJSON
@_exported import struct SystemSupport.SocketAddress

// The library is built on Linux facilities (epoll, pidfd, SOCK_SEQPACKET, SCM_RIGHTS, /proc).
#if !os(Linux)
#error("The Cluster library runs on Linux only: it is built on epoll, pidfd, SOCK_SEQPACKET and SCM_RIGHTS")
#endif
