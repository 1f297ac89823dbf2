-- A resume reads the messages of the user's conversations after the cursor's `pos` (issue 17,
-- item 6): with this index each conversation's part is a range of it. Without it SQLite went
-- through the conversation's whole history by `seq` for every page of every resume, so a
-- resume cost grew with the history, not with what it sends. Keep in step with
-- ../sqlite/1706_messages_conv_pos.sql.
CREATE INDEX messages_conv_pos ON messages(conv_id, pos);
