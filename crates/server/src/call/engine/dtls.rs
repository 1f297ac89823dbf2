//! The DTLS of every leg, with its configuration made once per process.
//!
//! str0m's default crypto (`str0m-aws-lc-rs`) builds a new `dimpl::Config` for every DTLS
//! instance, and building one runs dimpl's check of its crypto provider (its key exchange groups
//! and cipher suites, one by one). Nothing in that configuration differs between legs (no
//! cookies, since ICE has checked the peer's address; the MTU str0m asks for), so a join storm
//! paid for the same check a thousand times: about 5 % of the server's CPU in
//! `chorus-bench live --storm 1000`, on the room's thread. [`provider`] is str0m's default crypto
//! with one change: its DTLS provider builds the configuration once per MTU, checked once, and
//! every instance shares it (an `Arc`, as str0m's does within one instance). Certificates,
//! handshakes, keys and SRTP are str0m's and dimpl's own, unchanged.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// str0m's default crypto provider with the shared DTLS configuration (see the module doc).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: OnceLock<SharedConfig> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let default = str0m::crypto::from_feature_flags();
            let dtls = DTLS.get_or_init(|| SharedConfig { inner: default.dtls_provider, configs: Mutex::default() });
            Arc::new(CryptoProvider { dtls_provider: dtls, ..default })
        })
        .clone()
}

/// A DTLS provider whose instances share one checked configuration per MTU.
#[derive(Debug)]
struct SharedConfig {
    /// str0m's own provider, for what is not per instance (certificates).
    inner: &'static dyn DtlsProvider,
    /// The configurations made so far, by MTU (str0m asks with one).
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfig {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(builder.build().map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?);
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfig {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert =
            dimpl::DtlsCertificate { certificate: cert.certificate.clone(), private_key: cert.private_key.clone() };
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("unsupported DTLS version {other}"))),
        };
        Ok(Box::new(Instance(dtls)))
    }
}

/// One leg's DTLS: dimpl's, as str0m's default provider makes it.
struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instance")
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active)
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.0.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instances made for the same MTU share one configuration, made (and checked) once; another
    /// MTU gets its own. The handshakes themselves run in every engine test (`engine::tests`).
    #[test]
    fn instances_share_one_configuration_per_mtu() {
        let shared =
            SharedConfig { inner: str0m::crypto::from_feature_flags().dtls_provider, configs: Mutex::default() };
        let cert = shared.generate_certificate().expect("a certificate");
        let now = Instant::now();
        for _ in 0..3 {
            shared.new_dtls(&cert, now, DtlsVersion::Auto, Some(1150)).expect("an instance");
        }
        shared.new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1200)).expect("an instance");
        let configs = shared.configs.lock().unwrap();
        assert_eq!(configs.iter().map(|(m, _)| *m).collect::<Vec<_>>(), [Some(1150), Some(1200)]);
        assert!(Arc::ptr_eq(&provider(), &provider()), "one provider per process");
    }
}
