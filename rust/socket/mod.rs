//! Transport sockets: TCP, UDP and ICMP arrive with the TCP and UDP issues.
