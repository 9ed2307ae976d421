//! crypto.x509.* and private-key parsing.

use super::{err, BuiltinError};
use crate::builtins::{BuiltinResult, Context};
use crate::value::Value;

/// The DER of a certificate's SubjectPublicKeyInfo.
pub(super) fn certificate_spki(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

fn todo() -> Result<Option<Value>, BuiltinError> {
    Err(err("not implemented"))
}

pub(super) fn parse_certificates(_: &[Value], _: &Context) -> BuiltinResult { todo() }
pub(super) fn parse_and_verify_certificates(_: &[Value], _: &Context) -> BuiltinResult { todo() }
pub(super) fn parse_and_verify_certificates_with_options(_: &[Value], _: &Context) -> BuiltinResult { todo() }
pub(super) fn parse_certificate_request(_: &[Value], _: &Context) -> BuiltinResult { todo() }
pub(super) fn parse_keypair(_: &[Value], _: &Context) -> BuiltinResult { todo() }
pub(super) fn parse_rsa_private_key(_: &[Value], _: &Context) -> BuiltinResult { todo() }
pub(super) fn parse_private_keys(_: &[Value], _: &Context) -> BuiltinResult { todo() }
