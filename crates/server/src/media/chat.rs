//! Files in chat: a message may carry a stored file (`file.upload`, checked by messaging as the
//! sender's finished upload) instead of inline bytes. Sending one records the file in the
//! conversation (`conv_files`, in the message's own transaction), and from then on the
//! conversation's members may read it: both people of a 1:1, the members who may receive of a
//! group (as they are now: a member who leaves loses access). Deleting the message does not
//! delete the file or its record: the bytes stay the uploader's upload until they delete it.

use super::Media;
use crate::error::ApiResult;
use sqlx::Row;

impl Media {
    /// Whether `uid` may read file `id` as a member of a conversation it was sent in.
    pub(super) async fn readable_in_chat(&self, uid: i64, id: &str) -> ApiResult<bool> {
        // The read pool first, then the write pool (a message sent a moment ago), as in `library`.
        for pool in [&self.db.read, &self.db.write] {
            if self.readable_in_chat_from(pool, uid, id).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn readable_in_chat_from(&self, pool: &sqlx::AnyPool, uid: i64, id: &str) -> ApiResult<bool> {
        let rows = sqlx::query(
            "SELECT c.gid, c.user_lo, c.user_hi FROM conv_files f JOIN conversations c ON c.conv_id = f.conv_id \
             WHERE f.upload_id = $1",
        )
        .bind(id)
        .fetch_all(pool)
        .await?;
        for r in rows {
            let gid: Option<i64> = r.try_get("gid")?;
            match gid {
                Some(gid) => {
                    if self.groups.policy(gid).await?.is_some_and(|p| p.can_receive(uid)) {
                        return Ok(true);
                    }
                }
                None => {
                    let (lo, hi): (Option<i64>, Option<i64>) = (r.try_get("user_lo")?, r.try_get("user_hi")?);
                    if lo == Some(uid) || hi == Some(uid) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
}
