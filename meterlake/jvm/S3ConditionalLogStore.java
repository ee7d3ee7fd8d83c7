package io.meterlake.delta;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.ByteArrayOutputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.util.Arrays;
import java.util.Iterator;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Delta commits on S3 that two processes cannot overwrite.
 *
 * <p>Delta's own S3 log store checks that commit file N does not exist and then writes it: two
 * processes committing version N at once both succeed, and the later PUT silently replaces the
 * earlier commit (Delta only promises S3 safety for one driver). This store creates each commit
 * file with S3's conditional write (If-None-Match: *, through S3A's conditional create), so
 * exactly one writer of version N succeeds; the other gets FileAlreadyExistsException, which
 * Delta answers as it does any concurrent commit: it checks for a conflict and retries at N + 1.
 *
 * <p>A refused PUT may also be this writer's own: S3A retries a request whose answer was lost,
 * and the retry finds the object the first attempt created. The object then holds exactly the
 * bytes written (a commit carries its own transaction id and time), so equal bytes count as
 * success; anything else is another writer's commit.
 */
public class S3ConditionalLogStore extends HadoopFileSystemLogStore {
  private static final String CONDITIONAL = "fs.option.create.conditional.overwrite";

  public S3ConditionalLogStore(Configuration hadoopConf) {
    super(hadoopConf);
  }

  @Override
  public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration conf)
      throws IOException {
    ByteArrayOutputStream buffer = new ByteArrayOutputStream();
    while (actions.hasNext()) {
      buffer.write((actions.next() + "\n").getBytes(StandardCharsets.UTF_8));
    }
    byte[] commit = buffer.toByteArray();
    FileSystem fs = path.getFileSystem(conf);
    FSDataOutputStreamBuilder<?, ?> builder = fs.createFile(path).overwrite(overwrite);
    if (!overwrite) {
      builder.must(CONDITIONAL, true);
    }
    try (FSDataOutputStream out = builder.build()) {
      out.write(commit);
    } catch (IOException e) {
      if (overwrite || !refusedAsExisting(e)) {
        throw e;
      }
      if (Arrays.equals(commit, existing(fs, path))) {
        return; // our own earlier attempt created it
      }
      FileAlreadyExistsException exists = new FileAlreadyExistsException(path.toString());
      exists.initCause(e);
      throw exists;
    }
  }

  private static byte[] existing(FileSystem fs, Path path) throws IOException {
    try (InputStream in = fs.open(path)) {
      return in.readAllBytes();
    } catch (FileNotFoundException e) {
      return new byte[0];
    }
  }

  private static boolean refusedAsExisting(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      String text = String.valueOf(t.getMessage());
      if (t instanceof org.apache.hadoop.fs.FileAlreadyExistsException
          || t instanceof FileAlreadyExistsException
          || text.contains("412")
          || text.contains("PreconditionFailed")) {
        return true;
      }
    }
    return false;
  }

  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration conf) {
    return false; // one PUT: the object appears whole or not at all
  }
}
