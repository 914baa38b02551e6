// Fosgate Review: review the label proposals of a slide (or of one auto-labelling job) one tile at a time.
//
// For each pending proposal the tile opens with the proposed cells in the ROI Manager, and you choose:
//   Accept         the cells are right: stored as a label (source: the proposer, reviewer: you)
//   Reject         the proposal is wrong: not used for training
//   Save my edits  you deleted / drew / moved cells in the ROI Manager: your cells are stored instead
//   Skip           decide later (it stays pending)
//   Stop           end the session
// then the next one opens. The dialog shows how many proposals are still pending and who reviews.
// Needs the `fosgate` command line (pip install fosgate-client) and a running server.
//
// Interactive: a dialog asks for the server, your name, the slide id (or job id) and the fosgate program.
// Scripted:    ImageJ -batch Fosgate_Review.ijm "server=HOST:PORT;fosgate=/path/fosgate;reviewer=ana;
//              slide=sl_...;job=;decisions=/path/decisions.txt;out=/path/folder;result=/path/result.txt"
//   decisions.txt: one line per proposal, in review order: accept | reject | skip | stop |
//   edit [delete=I,J,...] [add=X,Y,W,H ...] (delete ROI Manager rows by 0-based index, add oval cells),
//   then the edited ROI Manager is saved as "Save my edits" does. No line left: stop.
//   result.txt: one line per proposal, "pr_...=accepted lb_...", and a summary.

var result = "";
var exe = "fosgate";
var resultText = "";
var server = "";
var reviewer = "";

args = getArgument();
server = argOr(args, "server", call("ij.Prefs.get", "fosgate.server", "127.0.0.1:50051"));
exe = argOr(args, "fosgate", call("ij.Prefs.get", "fosgate.program", "fosgate"));
reviewer = argOr(args, "reviewer", call("ij.Prefs.get", "fosgate.reviewer", ""));
slide = argOr(args, "slide", call("ij.Prefs.get", "fosgate.review.slide", ""));
job = argOr(args, "job", "");
decisions = argOr(args, "decisions", "");
out = argOr(args, "out", getDirectory("temp") + "fosgate" + File.separator + "review");
result = argOr(args, "result", "");
scripted = (args != "");

if (!scripted) {
  Dialog.create("fosgate: review proposals");
  Dialog.addString("Server (host:port)", server, 25);
  Dialog.addString("Your name (reviewer)", reviewer, 25);
  Dialog.addString("Slide id (sl_...)", slide, 25);
  Dialog.addString("or auto-label job id (jb_...)", job, 25);
  Dialog.addString("fosgate program", exe, 40);
  Dialog.show();
  server = Dialog.getString(); reviewer = String.trim(Dialog.getString()); slide = String.trim(Dialog.getString());
  job = String.trim(Dialog.getString()); exe = Dialog.getString();
  call("ij.Prefs.set", "fosgate.server", server);
  call("ij.Prefs.set", "fosgate.reviewer", reviewer);
  call("ij.Prefs.set", "fosgate.review.slide", slide);
  call("ij.Prefs.set", "fosgate.program", exe);
}
if (reviewer == "") fail("Say who reviews: give your name (it is stored with every decision).");
if (slide == "" && job == "") fail("Give the id of the slide (sl_...) or of the auto-labelling job whose proposals to review.");
File.makeDirectory(getDirectory("temp") + "fosgate");
File.makeDirectory(out);

script = newArray(0);
if (decisions != "") script = split(File.openAsString(decisions), "\n");
line = 0;
skipped = "";
nAccepted = 0; nRejected = 0; nEdited = 0; nSkipped = 0;
remaining = 0;

while (true) {
  showStatus("fosgate: fetching the next proposal ...");
  reply = exec(exe, "review", "next", "--server", server, "--slide", slide, "--job", job, "--skip", skipped,
               "--out", out);
  problem = kv(reply, "error");
  if (problem != "") fail(problem);
  if (indexOf(reply, "remaining=") < 0) fail(errorOf(reply));
  remaining = parseInt(kv(reply, "remaining"));
  pid = kv(reply, "proposal");
  if (pid == "") break;
  objects = kv(reply, "objects");
  region = kv(reply, "region");
  open(kv(reply, "image"));
  rename("fosgate review " + pid);
  tile = getImageID();
  roiManager("reset");
  rois = kv(reply, "rois");
  if (rois != "") roiManager("Open", rois);
  if (!is("Batch Mode")) roiManager("Show All without labels");
  left = "" + remaining + " pending (this one included)";
  if (nSkipped > 0) left = left + ", " + nSkipped + " skipped";
  msg = "Proposal " + pid + " at " + region + ": " + objects + " cells proposed.\n" + left + ". Reviewer: " + reviewer + ".";
  showStatus("fosgate: " + pid + ", " + left);

  if (scripted) {
    decision = "stop";
    while (line < script.length) {
      d = String.trim(script[line]);
      line++;
      if (d != "" && !startsWith(d, "#")) { decision = d; break; }
    }
  } else {
    Dialog.createNonBlocking("fosgate review (" + reviewer + ")");
    Dialog.addMessage(msg + "\n \nEdit the cells in the ROI Manager if needed (Delete; draw, then Add [t];\n"
                      + "select and move), then choose:");
    Dialog.addRadioButtonGroup("Decision", newArray("Accept", "Reject", "Save my edits", "Skip", "Stop"), 5, 1, "Accept");
    Dialog.show();
    decision = Dialog.getRadioButton();
  }
  verb = toLowerCase(decision);
  if (startsWith(verb, "edit") || startsWith(verb, "save")) {
    if (scripted) applyEdits(decision);
    labelId = sendEdits(pid, out);
    nEdited++;
    note(pid + "=replaced " + labelId);
  } else if (startsWith(verb, "accept") || startsWith(verb, "reject")) {
    what = "accept";
    if (startsWith(verb, "reject")) what = "reject";
    r = exec(exe, "review", "--server", server, what, pid, "--reviewer", reviewer, "--json");
    if (indexOf(r, "\"error\"") >= 0 || indexOf(r, "\"state\"") < 0) fail(errorOf(r));
    labelId = jsonString(r, "label_id");
    if (what == "accept") { nAccepted++; note(pid + "=accepted " + labelId); }
    else { nRejected++; note(pid + "=rejected"); }
  } else if (startsWith(verb, "skip")) {
    if (skipped == "") skipped = pid; else skipped = skipped + "," + pid;
    nSkipped++;
    note(pid + "=skipped");
  } else {
    closeTile(tile);
    break;
  }
  closeTile(tile);
}

pendingLeft = remaining;  // fetched before the last decision: what is left now (a stopped-on one stays pending)
summary = "fosgate: " + reviewer + " reviewed " + (nAccepted + nRejected + nEdited) + " proposals (accepted " + nAccepted
          + ", rejected " + nRejected + ", edited " + nEdited + ", skipped " + nSkipped + "); " + pendingLeft + " still pending.";
print(summary);
showStatus(summary);
resultText = resultText + "accepted=" + nAccepted + "\nrejected=" + nRejected + "\nedited=" + nEdited + "\nskipped=" + nSkipped
             + "\npending=" + pendingLeft + "\n";
if (result != "") File.saveString(resultText, result);
if (!scripted) showMessage("fosgate review", summary);

// ---------------------------------------------------------------- helpers
function note(text) {
  resultText = resultText + text + "\n";
  print("fosgate: " + text);
}
function closeTile(id) {
  roiManager("reset");
  if (isOpen(id)) { selectImage(id); close(); }
}
// Scripted edits: "edit delete=0,3 add=10,12,9,9 add=40,40,8,10"
function applyEdits(text) {
  parts = split(text, " ");
  for (p = 0; p < parts.length; p++) {
    if (startsWith(parts[p], "delete=")) {
      words = split(substring(parts[p], 7), ",");
      idx = newArray(words.length);
      for (k = 0; k < words.length; k++) idx[k] = parseInt(words[k]);
      Array.sort(idx);
      for (k = idx.length - 1; k >= 0; k--) {
        roiManager("select", idx[k]);
        roiManager("Delete");
      }
    }
  }
  for (p = 0; p < parts.length; p++) {
    if (startsWith(parts[p], "add=")) {
      v = split(substring(parts[p], 4), ",");
      makeOval(parseInt(v[0]), parseInt(v[1]), parseInt(v[2]), parseInt(v[3]));
      roiManager("Add");
      run("Select None");
    }
  }
  roiManager("deselect");
}
// Send the ROI Manager's cells as the replacement of the proposal; returns the new label id.
function sendEdits(pid, folder) {
  n = roiManager("count");
  if (n > 0) {
    zip = folder + File.separator + pid + ".edited.zip";
    roiManager("deselect");
    roiManager("Save", zip);
    r = exec(exe, "review", "--server", server, "replace", pid, "--roi-zip", zip, "--reviewer", reviewer, "--json");
  } else {
    // no cell left: the tile is background; send an empty mask of its size
    w = getWidth(); h = getHeight();
    newImage("fosgate-empty", "8-bit black", w, h, 1);
    empty = folder + File.separator + pid + ".empty.tif";
    saveAs("Tiff", empty);
    close();
    r = exec(exe, "review", "--server", server, "replace", pid, "--mask", empty, "--reviewer", reviewer, "--json");
  }
  if (indexOf(r, "\"error\"") >= 0 || indexOf(r, "lb_") < 0) fail(errorOf(r));
  id = jsonString(r, "label_id");
  return id;
}
function kv(text, key) {
  lines = split(text, "\n");
  for (i = 0; i < lines.length; i++) {
    if (startsWith(lines[i], key + "=")) return String.trim(substring(lines[i], lengthOf(key) + 1));
  }
  return "";
}
function jsonString(text, key) {
  i = indexOf(text, "\"" + key + "\": \"");
  if (i < 0) return "";
  s = substring(text, i + lengthOf(key) + 5);
  return substring(s, 0, indexOf(s, "\""));
}
function argOr(text, key, fallback) {
  parts = split(text, ";");
  for (i = 0; i < parts.length; i++) {
    kv2 = split(parts[i], "=");
    if (kv2.length >= 1 && String.trim(kv2[0]) == key && indexOf(parts[i], "=") > 0)
      return substring(parts[i], indexOf(parts[i], "=") + 1);
  }
  return fallback;
}
function errorOf(text) {
  i = indexOf(text, "\"error\": \"");
  if (i < 0) {
    if (text == "") return "The fosgate program did not answer. Is '" + exe + "' installed? (set its full path in the dialog)";
    return "fosgate failed: " + text;
  }
  s = substring(text, i + 10);
  return substring(s, 0, indexOf(s, "\""));
}
function fail(message) {
  if (result != "") File.saveString(resultText + "error=" + message + "\n", result);
  if (is("Batch Mode") || getArgument() != "") { print("fosgate: " + message); exit; }
  exit("fosgate: " + message);
}
