//! The IPPROTO_IP multicast options of a UDP socket as the stdlib's `socket`
//! passes them: `IP_ADD_MEMBERSHIP`/`IP_DROP_MEMBERSHIP` with a `struct
//! ip_mreq` (8 bytes: group, interface address) or `ip_mreqn` (12: group,
//! address, interface index), `IP_MULTICAST_TTL`/`LOOP` as an int or a
//! byte, `IP_MULTICAST_IF` with an address; and the IPPROTO_IPV6 ones:
//! `IPV6_JOIN_GROUP`/`IPV6_LEAVE_GROUP` with a `struct ipv6_mreq` (20 bytes:
//! group, interface index), `IPV6_MULTICAST_HOPS`/`LOOP` as an int.
//! Malformed values are the errno Linux gives.

use super::call::option_struct;
use super::errors::os_error;
use crate::socket::udp::MembershipError;
use crate::wire::Ipv4Addr;
use pyo3::prelude::*;
use std::net::Ipv6Addr;

/// `IPV6_JOIN_GROUP`/`IPV6_LEAVE_GROUP` (Linux calls them ADD/DROP_MEMBERSHIP).
#[cfg(target_os = "linux")]
pub const IPV6_JOIN_GROUP: libc::c_int = libc::IPV6_ADD_MEMBERSHIP;
#[cfg(target_os = "linux")]
pub const IPV6_LEAVE_GROUP: libc::c_int = libc::IPV6_DROP_MEMBERSHIP;
#[cfg(not(target_os = "linux"))]
pub const IPV6_JOIN_GROUP: libc::c_int = libc::IPV6_JOIN_GROUP;
#[cfg(not(target_os = "linux"))]
pub const IPV6_LEAVE_GROUP: libc::c_int = libc::IPV6_LEAVE_GROUP;

pub fn membership_error(e: MembershipError) -> PyErr {
    os_error(match e {
        MembershipError::NotMulticast => libc::EINVAL,
        MembershipError::AlreadyMember => libc::EADDRINUSE,
        MembershipError::NotMember => libc::EADDRNOTAVAIL,
        MembershipError::TooMany => libc::ENOBUFS,
    })
}

fn address_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// The group and the interface address of an `ip_mreq`/`ip_mreqn`.
pub fn membership(value: &Bound<'_, PyAny>) -> PyResult<(Ipv4Addr, Ipv4Addr)> {
    let bytes = option_struct(value)?;
    if bytes.len() < 8 {
        return Err(os_error(libc::EINVAL));
    }
    Ok((address_at(&bytes, 0), address_at(&bytes, 4)))
}

/// The group of an `ipv6_mreq` (its interface index is not checked: the
/// stack has one link).
pub fn membership_v6(value: &Bound<'_, PyAny>) -> PyResult<Ipv6Addr> {
    let bytes = option_struct(value)?;
    if bytes.len() < 20 {
        return Err(os_error(libc::EINVAL));
    }
    Ok(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..16]).unwrap()))
}

/// The address of `IP_MULTICAST_IF` (an `in_addr`, or an `ip_mreqn`'s).
pub fn interface_address(value: &Bound<'_, PyAny>) -> PyResult<Ipv4Addr> {
    let bytes = option_struct(value)?;
    match bytes.len() {
        4..=7 => Ok(address_at(&bytes, 0)),
        n if n >= 8 => Ok(address_at(&bytes, 4)),
        _ => Err(os_error(libc::EINVAL)),
    }
}

/// An int option's value, given as an int or as bytes (one byte is read
/// as the byte it is, as Linux reads `IP_MULTICAST_TTL`/`LOOP`).
pub fn int_value(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if let Ok(v) = value.extract::<i64>() {
        return Ok(v);
    }
    let bytes = option_struct(value)?;
    match bytes.len() {
        0 => Err(os_error(libc::EINVAL)),
        1..=3 => Ok(i64::from(bytes[0])),
        _ => Ok(i64::from(i32::from_ne_bytes(
            bytes[..4].try_into().unwrap(),
        ))),
    }
}
