pub mod dhcp;
