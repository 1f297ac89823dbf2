//! Outgoing mail (and SMS): SMTP when configured, otherwise files in
//! `DATA/outbox/` so that login works out of the box.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::Config;

/// Where mail goes.
pub enum Mailer {
    /// A real SMTP server.
    Smtp {
        /// Transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// From address.
        from: Mailbox,
        /// Where text messages go (no SMS gateway yet).
        outbox: PathBuf,
    },
    /// Files in a folder: `*.eml` for mail, `*.sms` for text messages.
    Outbox {
        /// The folder.
        dir: PathBuf,
        /// From address.
        from: Mailbox,
    },
}

impl Mailer {
    /// Builds the mailer the config asks for.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Mailer> {
        let from: Mailbox = cfg.mail_from.parse().map_err(|e| anyhow::anyhow!("mail_from {:?}: {e}", cfg.mail_from))?;
        // The outbox holds live login codes: owner only, like the data directory.
        crate::private_dir(&cfg.data)?;
        let outbox = cfg.data.join("outbox");
        crate::private_dir(&outbox)?;
        crate::private_files_in(&outbox);
        match &cfg.smtp_host {
            Some(host) => {
                let mut b = match cfg.smtp_security.as_str() {
                    "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
                    "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
                    _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                };
                b = b.port(cfg.smtp_port);
                if let (Some(u), Some(p)) = (&cfg.smtp_user, &cfg.smtp_password) {
                    b = b.credentials(Credentials::new(u.clone(), p.clone()));
                }
                Ok(Mailer::Smtp { transport: b.build(), from, outbox })
            }
            None => Ok(Mailer::Outbox { dir: outbox, from }),
        }
    }

    /// The outbox folder (also where text messages go when SMTP is set).
    pub fn outbox(&self) -> &Path {
        match self {
            Mailer::Smtp { outbox, .. } => outbox,
            Mailer::Outbox { dir, .. } => dir,
        }
    }

    /// Sends a plain-text mail.
    pub async fn send_mail(&self, to: &str, subject: &str, body: &str) -> anyhow::Result<()> {
        let (from, to_box) = match self {
            Mailer::Smtp { from, .. } | Mailer::Outbox { from, .. } => (from.clone(), to.parse::<Mailbox>()?),
        };
        let msg = lettre::Message::builder().from(from).to(to_box).subject(subject).body(body.to_string())?;
        match self {
            Mailer::Smtp { transport, .. } => {
                transport.send(msg).await?;
                tracing::info!(%to, "mail sent by SMTP");
            }
            Mailer::Outbox { dir, .. } => {
                let path = dir.join(outbox_name("eml"));
                write_outbox(&path, &msg.formatted()).await?;
                tracing::info!(%to, path = %path.display(), "mail written to outbox (no SMTP configured)");
            }
        }
        Ok(())
    }

    /// Sends a text message to a phone. No SMS gateway exists yet: always the outbox.
    pub async fn send_sms(&self, phone: &str, body: &str) -> anyhow::Result<()> {
        let dir = match self {
            Mailer::Outbox { dir, .. } | Mailer::Smtp { outbox: dir, .. } => dir.clone(),
        };
        let path = dir.join(outbox_name("sms"));
        write_outbox(&path, format!("To: +{phone}\n\n{body}\n").as_bytes()).await?;
        tracing::info!(%phone, path = %path.display(), "SMS written to outbox (no SMS gateway configured)");
        Ok(())
    }
}

/// Deletes the outbox files (`*.eml`, `*.sms`) older than `max_age`. Returns how many.
pub async fn purge_outbox(dir: &Path, max_age: Duration) -> std::io::Result<usize> {
    let mut n = 0;
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    while let Some(e) = entries.next_entry().await? {
        let path = e.path();
        if !matches!(path.extension().and_then(|x| x.to_str()), Some("eml" | "sms")) {
            continue;
        }
        let Ok(modified) = e.metadata().await.and_then(|m| m.modified()) else { continue };
        if now.duration_since(modified).is_ok_and(|age| age > max_age) {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(n)
}

/// Writes `content` to a new outbox file readable by the owner only.
async fn write_outbox(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut opts = tokio::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).await?;
    f.write_all(content).await?;
    f.flush().await
}

fn outbox_name(ext: &str) -> String {
    format!("{}-{}.{ext}", crate::clock::now_ms(), crate::auth_token::random_digits(6))
}
