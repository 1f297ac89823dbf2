//! Outgoing mail (and SMS): SMTP when configured, otherwise files in
//! `DATA/outbox/` so that login works out of the box.

use std::path::PathBuf;

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
        let outbox = cfg.data.join("outbox");
        std::fs::create_dir_all(&outbox)?;
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
                tokio::fs::write(&path, msg.formatted()).await?;
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
        tokio::fs::write(&path, format!("To: +{phone}\n\n{body}\n")).await?;
        tracing::info!(%phone, path = %path.display(), "SMS written to outbox (no SMS gateway configured)");
        Ok(())
    }
}

fn outbox_name(ext: &str) -> String {
    format!("{}-{}.{ext}", crate::clock::now_ms(), crate::auth_token::random_digits(6))
}
