// Fosgate Send ROIs: send the ROI Manager (your reviewed / edited cells) to fosgate as a label of the
// current image, or as the replacement of a proposal being reviewed.
//
// Cells are the ROIs whose names do not start with "region" (regions are for counting, not cells).
// Interactive: a dialog asks for the server, your name and (optionally) the proposal id.
// Scripted:   ImageJ -batch Fosgate_Send_ROIs.ijm "server=HOST:PORT;fosgate=/path/fosgate;
//             image=/path/img.tif;rois=/path/RoiSet.zip;reviewer=ana;proposal=pr_...;result=/path/out.txt"

var result = "";
var exe = "fosgate";

args = getArgument();
server = argOr(args, "server", call("ij.Prefs.get", "fosgate.server", "127.0.0.1:50051"));
exe = argOr(args, "fosgate", call("ij.Prefs.get", "fosgate.program", "fosgate"));
reviewer = argOr(args, "reviewer", call("ij.Prefs.get", "fosgate.reviewer", ""));
proposal = argOr(args, "proposal", "");
image = argOr(args, "image", "");
rois = argOr(args, "rois", "");
result = argOr(args, "result", "");

if (args == "") {
  Dialog.create("fosgate: send ROIs as labels");
  Dialog.addString("Server (host:port)", server, 25);
  Dialog.addString("Your name (reviewer)", reviewer, 25);
  Dialog.addString("Proposal id (empty: label the whole image)", proposal, 25);
  Dialog.addString("fosgate program", exe, 40);
  Dialog.show();
  server = Dialog.getString(); reviewer = Dialog.getString(); proposal = Dialog.getString(); exe = Dialog.getString();
  call("ij.Prefs.set", "fosgate.server", server);
  call("ij.Prefs.set", "fosgate.reviewer", reviewer);
  call("ij.Prefs.set", "fosgate.program", exe);
}

work = getDirectory("temp") + "fosgate" + File.separator;
File.makeDirectory(work);
if (image != "") open(image);
if (nImages == 0) fail("Open the image the ROIs belong to first.");
if (image == "") {
  image = work + replace(getTitle(), "[^A-Za-z0-9._-]", "_");
  if (!endsWith(toLowerCase(image), ".tif")) image = image + ".tif";
  run("Duplicate...", "title=fosgate-upload duplicate");
  saveAs("Tiff", image);
  close();
}
if (rois != "") { roiManager("reset"); roiManager("Open", rois); }
n = roiManager("count");
cells = newArray(0);
for (i = 0; i < n; i++) {
  if (!startsWith(toLowerCase(RoiManager.getName(i)), "region")) cells = Array.concat(cells, i);
}
if (cells.length == 0) fail("The ROI Manager holds no cells to send.");
zip = work + "fosgate-edited-rois.zip";
roiManager("select", cells);
roiManager("Save", zip);
roiManager("deselect");

if (proposal != "")
  reply = exec(exe, "review", "--server", server, "replace", proposal, "--roi-zip", zip, "--reviewer", reviewer, "--json");
else
  reply = exec(exe, "label", "--server", server, "--image", image, "--roi-zip", zip, "--reviewer", reviewer, "--json");
if (indexOf(reply, "\"error\"") >= 0 || indexOf(reply, "lb_") < 0) fail(errorOf(reply));
i = indexOf(reply, "lb_");
label = substring(reply, i, i + 15);
msg = "fosgate: stored " + cells.length + " cells as label " + label;
print(msg);
showStatus(msg);
if (result != "") File.saveString("label=" + label + "\ncells=" + cells.length + "\n", result);

function argOr(text, key, fallback) {
  parts = split(text, ";");
  for (i = 0; i < parts.length; i++) {
    kv = split(parts[i], "=");
    if (kv.length >= 2 && String.trim(kv[0]) == key) return substring(parts[i], indexOf(parts[i], "=") + 1);
  }
  return fallback;
}
function errorOf(text) {
  i = indexOf(text, "\"error\": \"");
  if (i < 0) {
    if (text == "") return "The fosgate program did not answer. Is '" + exe + "' installed?";
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
