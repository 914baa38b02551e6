// Fosgate Segment: segment and count c-fos positive cells in the current image with a fosgate server.
//
// Install: copy into Fiji.app/macros (or Plugins > Install...). Needs the `fosgate` command line
// (pip install fosgate) on this computer and a running server (`fosgate serve`).
// Interactive: a dialog asks for the server address, the model id and the fosgate program (remembered).
// Scripted:   ImageJ -batch Fosgate_Segment.ijm "server=HOST:PORT;model=md_...;fosgate=/path/fosgate;
//             image=/path/img.tif;out=/path/folder;result=/path/result.txt"
// Result: the mask opens, the cells are loaded into the ROI Manager for review, the count is shown.

var result = "";
var exe = "fosgate";

args = getArgument();
server = argOr(args, "server", call("ij.Prefs.get", "fosgate.server", "127.0.0.1:50051"));
model = argOr(args, "model", call("ij.Prefs.get", "fosgate.model", ""));
exe = argOr(args, "fosgate", call("ij.Prefs.get", "fosgate.program", "fosgate"));
image = argOr(args, "image", "");
out = argOr(args, "out", "");
result = argOr(args, "result", "");

if (args == "") {
  Dialog.create("fosgate: segment c-fos cells");
  Dialog.addString("Server (host:port)", server, 25);
  Dialog.addString("Model id", model, 25);
  Dialog.addString("fosgate program", exe, 40);
  Dialog.show();
  server = Dialog.getString(); model = Dialog.getString(); exe = Dialog.getString();
  call("ij.Prefs.set", "fosgate.server", server);
  call("ij.Prefs.set", "fosgate.model", model);
  call("ij.Prefs.set", "fosgate.program", exe);
}
if (model == "") fail("Give the id of a trained model (see 'fosgate models').");

work = getDirectory("temp") + "fosgate" + File.separator;
File.makeDirectory(work);
if (image != "") {
  open(image);
} else {
  if (nImages == 0) fail("Open an image first.");
  stem0 = replace(getTitle(), "[^A-Za-z0-9._-]", "_");
  image = work + stem0;
  if (!endsWith(toLowerCase(image), ".tif")) image = image + ".tif";
  run("Duplicate...", "title=fosgate-upload duplicate");
  saveAs("Tiff", image);
  close();
}
if (out == "") out = work + "results";
File.makeDirectory(out);
stem = File.getNameWithoutExtension(image);
if (endsWith(toLowerCase(stem), ".ome")) stem = substring(stem, 0, lengthOf(stem) - 4);

showStatus("fosgate: segmenting " + stem + " ...");
reply = exec(exe, "predict", "--server", server, "--model", model, "--out", out, "--imagej", "--json", image);
if (indexOf(reply, "\"error\"") >= 0 || indexOf(reply, "\"count\"") < 0) fail(errorOf(reply));
serverCount = parseInt(jsonNumber(reply, "count"));
job = jsonString(reply, "job_id");
call("ij.Prefs.set", "fosgate.lastjob", job);  // Fosgate Count Regions counts this prediction on the server

roiManager("reset");
roiManager("Open", out + File.separator + stem + ".rois.zip");
open(out + File.separator + stem + ".mask.tif");
n = roiManager("count");
roiManager("Show All without labels");
msg = "fosgate: " + n + " c-fos positive cells in " + stem;
showStatus(msg);
print(msg);
if (result != "") File.saveString("count=" + n + "\nserver_count=" + serverCount + "\njob=" + job + "\n", result);

// ---------------------------------------------------------------- helpers
function argOr(text, key, fallback) {
  parts = split(text, ";");
  for (i = 0; i < parts.length; i++) {
    kv = split(parts[i], "=");
    if (kv.length >= 2 && String.trim(kv[0]) == key) return substring(parts[i], indexOf(parts[i], "=") + 1);
  }
  return fallback;
}
function jsonNumber(text, key) {
  i = indexOf(text, "\"" + key + "\":");
  if (i < 0) return "NaN";
  s = substring(text, i + lengthOf(key) + 3);
  s = String.trim(s);
  j = 0;
  while (j < lengthOf(s) && indexOf("0123456789.-", substring(s, j, j + 1)) >= 0) j++;
  return substring(s, 0, j);
}
function jsonString(text, key) {
  i = indexOf(text, "\"" + key + "\": \"");
  if (i < 0) return "";
  s = substring(text, i + lengthOf(key) + 5);
  return substring(s, 0, indexOf(s, "\""));
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
  if (result != "") File.saveString("error=" + message + "\n", result);
  if (is("Batch Mode") || getArgument() != "") { print("fosgate: " + message); exit; }
  exit("fosgate: " + message);
}
