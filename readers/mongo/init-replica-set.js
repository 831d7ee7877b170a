// docker/compose.yaml only: turn the mongo container into a single-member replica set `rs0` (change
// streams need one). Idempotent. Clients on the host connect with
//   mongodb://127.0.0.1:27017/?directConnection=true
// (the member is named mongo:27017, resolvable only inside the compose network).
try {
  const status = rs.status();
  print(`replica set ${status.set} already initiated`);
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] });
  print("replica set rs0 initiated");
}
// Wait until this member is primary, so writes right after `compose up --wait` succeed.
for (let i = 0; i < 60 && !db.hello().isWritablePrimary; i++) sleep(1000);
if (!db.hello().isWritablePrimary) throw new Error("rs0 has no primary after 60 s");
